"""`cato-backend` command line: serve, emulate, profile, demo, token."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys

from .config import Config, default_config, load_config


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8000; 0 = any free)")
    p.add_argument("--config", help="YAML/JSON config file (default: the embedded default)")
    p.add_argument("--engine", choices=["vllm", "emulated"],
                   help="engine for every model's replicas (overrides the config)")
    p.add_argument("--replicas", type=int, help="replicas per model (overrides the config)")
    p.add_argument("--policy", choices=["cato", "round_robin", "p2c", "least_loaded", "slo_tier"],
                   help="router policy (overrides the config)")
    p.add_argument("--min-replicas", type=int, help="autoscaling lower bound per model")
    p.add_argument("--max-replicas", type=int, help="autoscaling upper bound per model; "
                   "above --min-replicas it turns the autoscaler on")
    p.add_argument("--scaling-policy", choices=["cato", "ray"],
                   help="autoscaler: paper Algorithm 2 (cato) or Ray Serve's queue-length policy")
    p.add_argument("--auth", metavar="FILE",
                   help="turn auth on: bearer tokens (hashes) and tenants from FILE, as "
                        "written by `cato-backend token new` (overrides the config's auth.file)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate "
                   "(chain); needs --tls-key")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--log-prompts", action="store_true", default=None,
                   help="DEBUG ONLY: write every task's inputs and output text to the log "
                        "(off by default: no prompt or completion text is logged)")


def config_from_args(args: argparse.Namespace) -> Config:
    config = load_config(args.config) if args.config else default_config()
    data = config.model_dump(mode="json")
    if args.host is not None:
        data["host"] = args.host
    if args.port is not None:
        data["port"] = args.port
    if args.policy:
        data["router"]["policy"] = args.policy
    if getattr(args, "auth", None):
        data["auth"]["file"] = args.auth
    if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None):
        data["tls"] = {"cert_file": args.tls_cert, "key_file": args.tls_key}
    if getattr(args, "log_prompts", None):
        data["log_prompts"] = True
    for m in data["models"].values():
        if args.engine:
            if m["engine"] == "static":
                raise SystemExit("--engine cannot change a static model's engine")
            m["engine"] = args.engine
        if args.replicas is not None:
            if args.replicas < 0:
                raise SystemExit("--replicas must be at least 0")
            m["replicas"] = args.replicas
        if args.min_replicas is not None or args.max_replicas is not None:
            lo = args.min_replicas if args.min_replicas is not None else 1
            hi = args.max_replicas if args.max_replicas is not None else max(lo, 1)
            if lo < 0 or hi < lo:
                raise SystemExit("need 0 <= --min-replicas <= --max-replicas")
            if hi == lo:  # no room to move: a fixed pool
                m["replicas"], m["autoscale"] = lo, None
            else:
                m["autoscale"] = {**(m.get("autoscale") or {}), "min_replicas": lo,
                                  "max_replicas": hi}
        if args.scaling_policy and m.get("autoscale") is not None:
            m["autoscale"]["policy"] = args.scaling_policy
    return Config.model_validate(data)


async def _serve(config: Config) -> None:
    from .backend import Backend
    from .server import start_server

    def log(msg: str) -> None:
        print(msg, flush=True)

    backend = Backend(config, log=log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    engines = ", ".join(f"{n}: {m.replicas if m.engine != 'static' else len(m.urls)} x "
                        f"{m.engine}{' (EMULATED engine: load-testing only)' if m.engine == 'emulated' else ''}"
                        for n, m in config.models.items())
    log(f"cato-backend: starting replicas ({engines}); router {config.router.policy}")
    ssl_context = None
    if config.tls.cert_file and config.tls.key_file:
        from .server import tls_context

        ssl_context = tls_context(config.tls.cert_file, config.tls.key_file)
    runner, port = await start_server(backend, config.host, config.port, ssl_context)
    _quiet_gc()
    scheme = "https" if ssl_context is not None else "http"
    log(f"cato-backend: listening on {scheme}://{config.host}:{port} "
        f"(GET /v1/status for replica states)")
    try:
        await stop.wait()
    finally:
        log("cato-backend: shutting down, stopping replicas")
        await runner.cleanup()
        await backend.stop()
        log("cato-backend: stopped")


def _quiet_gc() -> None:
    """Relaying streams allocates many short-lived objects; with the default thresholds the
    collector runs every 700 allocations and its full passes walk every long-lived object
    (configs, profiles, aiohttp's machinery): pauses that land on some request's first
    token. Freeze what start-up made and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def _run(coro) -> None:
    """Run the backend on uvloop: the per-token relay of many streams is event-loop bound
    (bench/results/overhead.md), and uvloop's loop is much cheaper per I/O operation."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cato-backend", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p_serve = sub.add_parser("serve", help="run the backend")
    _serve_args(p_serve)

    p_emu = sub.add_parser("emulate", help="run an EMULATED engine (load testing only)")
    p_emu.add_argument("--host", default="127.0.0.1")
    p_emu.add_argument("--port", type=int, default=8100)
    p_emu.add_argument("--profile", default="smollm2-135m-instruct.cpu-2core.json")
    p_emu.add_argument("--model", default="SmolLM2-135M-Instruct")
    p_emu.add_argument("--max-batch", type=int, default=256)
    p_emu.add_argument("--cold-start-s", type=float, default=0.0,
                       help="emulate a cold start: /health answers 503 (and generation is "
                            "refused) until this many seconds after start (default 0)")

    p_prof = sub.add_parser("profile", help="measure a running engine into profiles/*.json")
    from . import profile_measure  # light: aiohttp and the profile schema only

    profile_measure.add_arguments(p_prof)

    p_demo = sub.add_parser("demo", help="start the backend, send one task of each kind, "
                            "print a table, stop")
    p_demo.add_argument("--engine", choices=["vllm", "emulated"], default="vllm")
    p_demo.add_argument("--config")

    p_token = sub.add_parser("token", help="manage bearer tokens in an auth file")
    token_sub = p_token.add_subparsers(dest="token_cmd", required=True)
    p_new = token_sub.add_parser("new", help="add a token for a tenant; prints it ONCE (the "
                                 "file keeps only its SHA-256 hash)")
    p_new.add_argument("--tenant", required=True, help="tenant name ([A-Za-z0-9._-], <= 64)")
    p_new.add_argument("--file", required=True, help="auth file (created, mode 0600)")
    p_new.add_argument("--note", help="free text kept beside the hash (who, what for)")
    p_list = token_sub.add_parser("list", help="tenants and token ids (no secrets)")
    p_list.add_argument("--file", required=True)
    p_revoke = token_sub.add_parser("revoke", help="remove tokens by id (prefix)")
    p_revoke.add_argument("--file", required=True)
    p_revoke.add_argument("--id", required=True, help="token id as `token list` shows it")

    args = parser.parse_args(argv)
    if args.cmd == "serve":
        try:
            config = config_from_args(args)
            if config.auth.file:  # fail now, not at the first request
                from .auth import load_auth_file

                load_auth_file(config.auth.file)
            if config.tls.cert_file and config.tls.key_file:
                from .server import tls_context

                tls_context(config.tls.cert_file, config.tls.key_file)
        except (ValueError, OSError) as e:
            print(f"cato-backend: bad configuration: {e}", file=sys.stderr)
            return 2
        _run(_serve(config))
        return 0
    if args.cmd == "token":
        return _token(args)
    if args.cmd == "emulate":
        from .backend import resolve_profile_path
        from .emulator import run_emulator

        if args.cold_start_s < 0:
            print("cato-backend emulate: --cold-start-s must be >= 0", file=sys.stderr)
            return 2
        run_emulator(args.host, args.port, resolve_profile_path(args.profile), args.model,
                     args.max_batch, args.cold_start_s)
        return 0
    if args.cmd == "profile":
        return profile_measure.main(args)
    if args.cmd == "demo":
        from .demo import run_demo

        return run_demo(args.engine, args.config)
    return 2


def _token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .auth import add_token, load_auth_file, revoke_token

    try:
        if args.token_cmd == "new":
            token, entry = add_token(args.file, args.tenant, args.note)
            print(f"cato-backend: token {entry.id} for tenant {args.tenant} added to "
                  f"{args.file}; it is shown only this once:", file=sys.stderr)
            print(token)  # stdout: the token alone, for scripts
            return 0
        if args.token_cmd == "list":
            for name, tenant in load_auth_file(args.file).tenants.items():
                limits = tenant.limits.model_dump(exclude_none=True)
                print(f"{name}: {len(tenant.tokens)} token(s)"
                      + (f", limits {limits}" if limits else ""))
                for t in tenant.tokens:
                    print(f"  {t.id}  created {t.created or '?'}"
                          + (f"  {t.note}" if t.note else ""))
            return 0
        if args.token_cmd == "revoke":
            removed = revoke_token(args.file, args.id)
            if not removed:
                print(f"cato-backend: no token with id {args.id!r} in {args.file}",
                      file=sys.stderr)
                return 1
            print(f"cato-backend: revoked {len(removed)} token(s) of {sorted(set(removed))}; "
                  "a running backend drops them within seconds", file=sys.stderr)
            return 0
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        print(f"cato-backend token: {'.'.join(map(str, err['loc']))}: {err['msg']}",
              file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"cato-backend token: {e}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
