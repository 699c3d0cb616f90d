"""`cato-lsp` / `python -m cato_lsp`: the CATO language server, over stdio by default."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import ValidationError


def build_parser() -> argparse.ArgumentParser:
    from .protocol import Settings

    p = argparse.ArgumentParser(prog="cato-lsp", description=__doc__)
    p.add_argument("--backend", default=None,
                   help=f"CATO backend URL (default {Settings().backend_url}; the editor's "
                        "settings override it)")
    p.add_argument("--token", default=None,
                   help="bearer token for the backend (default: $CATO_TOKEN, else none)")
    p.add_argument("--cache-dir", default=None,
                   help="persistent result cache (default: $CATO_LSP_CACHE_DIR, else "
                        "~/.cache/cato/lsp)")
    p.add_argument("--tcp", action="store_true", help="serve one client over TCP, not stdio")
    # Clients such as vscode-languageclient add --stdio when told the transport; it is ours
    # by default, so accept it rather than fail to start.
    p.add_argument("--stdio", action="store_true", help="serve over stdio (the default)")
    p.add_argument("--host", default="127.0.0.1", help="TCP address (with --tcp)")
    p.add_argument("--port", type=int, default=2087, help="TCP port (with --tcp)")
    p.add_argument("--log-level", default="WARNING",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="this process's own log on stderr (default WARNING)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=args.log_level,
                        format="%(asctime)s cato-lsp %(levelname)s %(name)s: %(message)s")
    from .protocol import Settings
    from .server import build_server, start_stdio

    overrides = {}
    if args.backend:
        overrides["backend_url"] = args.backend
    token = args.token or os.environ.get("CATO_TOKEN")
    if token:
        overrides["token"] = token
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        print(f"cato-lsp: {e.errors(include_url=False)[0]['msg']}", file=sys.stderr)
        return 2
    server = build_server(settings, args.cache_dir)
    if args.tcp:
        server.start_tcp(args.host, args.port)
    else:
        start_stdio(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
