"""`cato-bench` command line: `overhead` (backend overhead on TTFT), `router` (router
decision time), `lsp-overhead` and `burst` (autoscaling under a burst). Each writes
<out>/<name>.json and <out>/<name>.md and prints the table."""

from __future__ import annotations

import argparse
import sys
import time

from . import DEFAULT_OUT


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("expected positive integers")
    return values


def _engines(text: str) -> list[str]:
    values = [x.strip() for x in text.split(",") if x.strip()]
    if not values or any(v not in ("thin", "realistic") for v in values) \
            or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected thin and/or realistic, got {text!r}")
    return values


def _common(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="directory for the results (default: bench/results)")
    p.add_argument("--name", default=name, help=f"result file stem (default: {name})")
    p.add_argument("--profile", default=None,
                   help="engine profile (file in profiles/ or a path; for overhead, the "
                        "realistic engine's); default: the measured SmolLM2 CPU profile, or a "
                        "constructed stand-in when it is missing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cato-bench", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("overhead", help="backend overhead on TTFT vs the engine directly "
                       "(EMULATED engine and backend as subprocesses, loopback)")
    _common(p, "overhead")
    p.add_argument("--concurrency", type=_ints, default=[1, 10, 50],
                   help="closed-loop client counts, comma-separated (default 1,10,50)")
    p.add_argument("--requests", type=_ints, default=None,
                   help="measured requests per path, both engines: one value for every level, "
                        "or one per level, comma-separated (default: thin 200 at concurrency 1 "
                        "and 1000 above, realistic 200 and 300)")
    p.add_argument("--warmup", type=int, default=20,
                   help="requests discarded at the start of every block (ramp-up), at least "
                        "the concurrency (default 20; 0 = none)")
    p.add_argument("--blocks", type=int, default=None,
                   help="interleaved blocks per path per level, both engines (default: thin 4, "
                        "realistic 2: D B | B D)")
    p.add_argument("--engines", type=_engines, default=["thin", "realistic"],
                   help="emulated engine configurations, comma-separated: thin (constructed, "
                        "isolates the backend; the targets apply to it) and realistic (the "
                        "--profile; context) (default thin,realistic)")
    p.add_argument("--backend-core", type=int, default=None,
                   help="pin the backend alone to this core and the engine and the client to "
                        "the others, as deployed (default: all share every core)")
    p.add_argument("--think", type=float, default=0.5,
                   help="mean think time before each request at concurrency > 1, as a "
                        "fraction of the engine's unloaded service time; exponential, seeded "
                        "(default 0.5; 0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--max-in-flight", type=int, default=64,
                   help="the backend's per-replica limit (default 64: no backend queueing)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="stop the whole run after this many seconds (default 600)")

    p = sub.add_parser("router", help="router decision time and pool snapshot time")
    _common(p, "router")
    p.add_argument("--replicas", type=_ints, default=[10, 100, 1000, 10000],
                   help="pool sizes, comma-separated (default 10,100,1000,10000)")
    p.add_argument("--decisions", type=int, default=50000,
                   help="timed decisions per policy per pool size (default 50000)")
    p.add_argument("--snapshots", type=int, default=2000,
                   help="timed snapshot+decide repetitions per pool size (default 2000)")
    p.add_argument("--warmup", type=int, default=500, help="untimed calls first (default 500)")
    p.add_argument("--max-seconds", type=float, default=10.0,
                   help="cap on each timed loop; it stops early, recording how many it ran "
                        "(default 10)")
    p.add_argument("--seed", type=int, default=0)

    from .lsp_overhead import add_parser as add_lsp_overhead  # cato_lsp's overhead

    add_lsp_overhead(sub, _common)

    from .burst import add_parser as add_burst  # autoscaling under a burst

    add_burst(sub, _common)

    from .load import add_parser as add_load  # load test with replica faults

    add_load(sub, _common)

    from .side_by_side import add_parser as add_side_by_side  # CATO vs real Ray Serve

    add_side_by_side(sub, _common)

    from ..sim.cli import add_parser as add_simulate  # the discrete-event simulator

    add_simulate(sub, _common)

    from .report import add_parser as add_report  # the paper's experiments, one report

    add_report(sub, _common)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.monotonic()
    if args.cmd == "overhead":
        from .overhead import OverheadConfig, overhead_markdown, run_overhead

        if ((args.blocks is not None and args.blocks < 1) or args.max_tokens < 1 or args.warmup < 0 or args.think < 0
                or (args.requests is not None
                    and len(args.requests) not in (1, len(args.concurrency)))):
            print("cato-bench: --blocks, --max-tokens must be >= 1, --warmup, --think >= 0, "
                  "--requests one value or one per --concurrency level", file=sys.stderr)
            return 2
        cfg = OverheadConfig(concurrency=args.concurrency, requests=args.requests,
                             warmup=args.warmup, blocks=args.blocks, engines=args.engines,
                             think=args.think, max_tokens=args.max_tokens,
                             max_in_flight=args.max_in_flight, profile=args.profile,
                             timeout_s=args.timeout, seed=args.seed,
                             backend_core=args.backend_core,
                             progress=not args.no_progress)
        payload = run_overhead(cfg, args.out, args.name)
        print(overhead_markdown(payload))
        if not payload["complete"]:
            print(f"cato-bench: stopped by --timeout {args.timeout:g}s; results are incomplete",
                  file=sys.stderr)
            return 1
    elif args.cmd == "router":
        from .router_time import RouterConfig, router_markdown, run_router

        if args.decisions < 1 or args.snapshots < 1 or args.warmup < 0:
            print("cato-bench: --decisions and --snapshots must be >= 1, --warmup >= 0",
                  file=sys.stderr)
            return 2
        cfg = RouterConfig(replicas=args.replicas, decisions=args.decisions,
                           snapshots=args.snapshots, warmup=args.warmup,
                           max_seconds=args.max_seconds, seed=args.seed, profile=args.profile,
                           progress=not args.no_progress)
        payload = run_router(cfg, args.out, args.name)
        print(router_markdown(payload))
    elif args.cmd == "lsp-overhead":
        from .lsp_overhead import main_from_args

        return main_from_args(args)
    elif args.cmd == "burst":
        from .burst import main_from_args as burst_main

        return burst_main(args)
    elif args.cmd == "load":
        from .load import main_from_args as load_main

        return load_main(args)
    elif args.cmd == "side-by-side":
        from .side_by_side import main_from_args as side_by_side_main

        return side_by_side_main(args)
    elif args.cmd == "simulate":
        from ..sim.cli import main_from_args as simulate_main

        return simulate_main(args)
    elif args.cmd == "report":
        from .report import main_from_args as report_main

        return report_main(args)
    else:  # pragma: no cover - argparse rejects unknown commands
        return 2
    print(f"\nwrote {args.out}/{args.name}.json and .md in {time.monotonic() - t0:.1f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
