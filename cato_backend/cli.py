"""`cato-backend` command line: serve, emulate, profile, demo."""

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
    p.add_argument("--policy", choices=["cato", "round_robin", "p2c", "least_loaded"],
                   help="router policy (overrides the config)")
    p.add_argument("--min-replicas", type=int, help="autoscaling lower bound per model")
    p.add_argument("--max-replicas", type=int, help="autoscaling upper bound per model; "
                   "above --min-replicas it turns the autoscaler on")
    p.add_argument("--scaling-policy", choices=["cato", "ray"],
                   help="autoscaler: paper Algorithm 2 (cato) or Ray Serve's queue-length policy")


def config_from_args(args: argparse.Namespace) -> Config:
    config = load_config(args.config) if args.config else default_config()
    data = config.model_dump(mode="json")
    if args.host is not None:
        data["host"] = args.host
    if args.port is not None:
        data["port"] = args.port
    if args.policy:
        data["router"]["policy"] = args.policy
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
    runner, port = await start_server(backend, config.host, config.port)
    _quiet_gc()
    log(f"cato-backend: listening on http://{config.host}:{port} "
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

    args = parser.parse_args(argv)
    if args.cmd == "serve":
        try:
            config = config_from_args(args)
        except (ValueError, OSError) as e:
            print(f"cato-backend: bad configuration: {e}", file=sys.stderr)
            return 2
        _run(_serve(config))
        return 0
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


if __name__ == "__main__":
    sys.exit(main())
