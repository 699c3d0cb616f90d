"""`cato-bench simulate`: the discrete-event simulator from the command line.

    cato-bench simulate --router cato,round_robin --scaling none --replicas 8 --rate 20 \\
        --duration 600 --seed 0
    cato-bench simulate --scaling cato,ray --min-replicas 1 --max-replicas 16 --rate 30
    cato-bench simulate --trace bench/traces/some.jsonl --router cato,p2c
    cato-bench simulate --speed        # the simulator's own speed: bench/results/sim_speed.*

Every combination of --router and --scaling runs on the same requests; the results go to
<out>/<name>.json (everything, replicas over time included) and <out>/<name>.md (a table per
kind, the policies side by side). Replicas are SIMULATED from an engine profile, not served.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..router import ROUTERS
from .oracle import ORACLE
from .requests import Request
from .run import SCALING

KINDS = ("completion", "generation", "translation", "summarization")


def _choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        values = [x.strip() for x in text.split(",") if x.strip()]
        bad = [v for v in values if v not in allowed]
        if not values or bad or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}")
        return values
    return parse


def _rates(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for part in text.split(","):
            kind, _, rate = part.partition("=")
            kind = kind.strip()
            if kind not in KINDS or kind in out:
                raise ValueError(kind)
            out[kind] = float(rate)
            if not out[kind] >= 0:
                raise ValueError(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected kind=rate pairs (kinds {', '.join(KINDS)}), got {text!r}") from None
    return out


def add_parser(sub: Any, common: Callable[[argparse.ArgumentParser, str], None]) -> None:
    p = sub.add_parser("simulate", help="discrete-event simulation of a replica pool "
                       "(SIMULATED replicas from an engine profile; the server's policies)")
    common(p, "simulate")
    p.add_argument("--router", type=_choices(ROUTERS + (ORACLE,)), default=["cato"],
                   help=f"router policies, comma-separated ({', '.join(ROUTERS)}; {ORACLE}: "
                        "EDF with known output lengths, simulator only; default cato)")
    p.add_argument("--scaling", type=_choices(SCALING), default=["none"],
                   help="autoscaling policies, comma-separated (none: a fixed pool of "
                        "--replicas; cato: paper Alg. 2; ray: Ray Serve's default; default none)")
    p.add_argument("--replicas", type=int, default=None,
                   help="replicas ready at the start (default 4 for a fixed pool, "
                        "--min-replicas when autoscaled)")
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=16)
    p.add_argument("--max-in-flight", type=int, default=None,
                   help="requests on a replica at once (default: the server config's, 8)")
    p.add_argument("--cold-start-s", type=float, default=None,
                   help="seconds until a new replica is ready (default: the profile's, else 60)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of arrivals (default 600; with --trace, the whole trace)")
    p.add_argument("--rate", type=float, default=4.0,
                   help="requests/s in total, shared equally among --kinds (default 4)")
    p.add_argument("--kinds", type=_choices(KINDS), default=list(KINDS),
                   help="task kinds for --rate (default all four)")
    p.add_argument("--rates", type=_rates, default=None,
                   help="requests/s per kind, e.g. completion=3,translation=0.5 (overrides "
                        "--rate and --kinds)")
    p.add_argument("--workload", choices=("synthetic", "corpus"), default="synthetic",
                   help="synthetic: made-up token counts (sim/synthetic.py); corpus: tasks "
                        "sampled from the real-code corpus (sim/workloads.py) (default synthetic)")
    p.add_argument("--trace", default=None,
                   help="replay a JSONL trace (sim/workloads.py load_trace) instead of Poisson")
    p.add_argument("--repair-rate", type=float, default=None,
                   help="share of translations whose validation fails (default: the "
                        "profiler's prior, 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", action="store_true",
                   help="measure the simulator's own speed instead (writes sim_speed.*; "
                        "the scenario options above are ignored)")
    p.add_argument("--speed-scale", type=float, default=1.0,
                   help="with --speed: multiply the scenarios' durations (for a quick check)")


def _requests(args: argparse.Namespace) -> tuple[Callable[[], Iterable[Request]], str]:
    """A factory of the workload (each run gets the same requests) and its description."""
    if args.trace:
        try:
            from .workloads import load_trace
        except ImportError as e:
            raise SystemExit(f"cato-bench simulate: trace replay lives in "
                             f"cato_backend/sim/workloads.py, which cannot be imported: {e}")
        requests = load_trace(args.trace)
        return (lambda: requests), f"trace {args.trace} ({len(requests)} requests)"
    rates = args.rates or {k: args.rate / len(args.kinds) for k in args.kinds}
    duration = args.duration if args.duration is not None else 600.0
    what = ", ".join(f"{k} {r:g}" for k, r in rates.items())
    if args.workload == "corpus":
        from .workloads import poisson as corpus_poisson

        requests = corpus_poisson(rates, duration, seed=args.seed)
        return (lambda: requests), (f"Poisson (seed {args.seed}) over {duration:g} s, req/s: "
                                    f"{what}; tasks from the real-code corpus")
    from .synthetic import poisson

    return (lambda: poisson(rates, duration, seed=args.seed)), (
        f"Poisson (seed {args.seed}) over {duration:g} s, req/s: {what}; synthetic token "
        f"counts (sim/synthetic.py)")


def _progress_bar(enabled: bool, total: float | None, desc: str):
    """A `progress(now)` callback on a tqdm bar over virtual seconds, and a closer."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=round(total) if total else None, unit="s", desc=desc, leave=False,
               file=sys.stderr)
    last = [0]

    def progress(now: float) -> None:
        n = int(now)
        if n > last[0]:
            bar.update(n - last[0])
            last[0] = n

    return progress, bar.close


def main_from_args(args: argparse.Namespace) -> int:
    from ..bench import (environment, environment_note, finish_environment, resolve_profile,
                         write_results)

    if args.speed:
        from .speed import run_speed, speed_markdown

        payload = run_speed(args.out, "sim_speed" if args.name == "simulate" else args.name,
                            profile_arg=args.profile, scale=args.speed_scale,
                            progress=not args.no_progress)
        print(speed_markdown(payload))
        return 0
    if (args.replicas is not None and args.replicas < 0) or args.min_replicas < 0 \
            or args.max_replicas < 1 or args.min_replicas > args.max_replicas \
            or (args.duration is not None and args.duration <= 0) or args.rate < 0:
        print("cato-bench simulate: need replicas >= 0, 0 <= min <= max replicas, max >= 1, "
              "duration > 0, rate >= 0", file=sys.stderr)
        return 2
    from .run import SimConfig, Simulation

    env = environment()
    t0 = time.monotonic()
    path, profile, source = resolve_profile(args.profile, None)
    make_requests, workload = _requests(args)
    runs = []
    for router, scaling in itertools.product(args.router, args.scaling):
        cfg = SimConfig(router=router, scaling=scaling, replicas=args.replicas,
                        min_replicas=args.min_replicas, max_replicas=args.max_replicas,
                        max_in_flight=args.max_in_flight, cold_start_s=args.cold_start_s,
                        seed=args.seed, duration_s=args.duration if args.trace else None,
                        **({} if args.repair_rate is None else {"repair_rate": args.repair_rate}))
        label = f"{router} / {scaling}"
        requests = make_requests()
        horizon = args.duration or (requests[-1].t if isinstance(requests, list) and requests
                                    else 600.0)
        progress, close = _progress_bar(not args.no_progress, horizon, label)
        try:
            summary = Simulation(cfg, profile).run(requests, progress)
        finally:
            close()
        runs.append({"label": label, "router": router, "scaling": scaling,
                     "config": _config_record(cfg), "summary": summary})
    finish_environment(env)
    payload = {
        "what": "cato-bench simulate: discrete-event simulation; replicas are SIMULATED "
                "from the engine profile, the router, queues, slack planning and autoscaler "
                "are the server's own objects",
        "workload": workload,
        "profile": {"path": str(path) if path else None, "source": source,
                    "model": profile.model, "hardware": profile.hardware},
        "runs": runs,
        "environment": env,
    }
    md = simulate_markdown(payload) + "\n\n" + environment_note(env, time.monotonic() - t0)
    write_results(args.out, args.name, payload, md)
    print(md)
    print(f"\nwrote {args.out}/{args.name}.json and .md", file=sys.stderr)
    return 0


def _config_record(cfg: Any) -> dict[str, Any]:
    return {"router": cfg.router, "scaling": cfg.scaling, "replicas": cfg.replicas,
            "autoscaler": cfg.autoscaler.model_dump() if cfg.autoscaler else None,
            "max_in_flight": cfg.max_in_flight, "cold_start_s": cfg.cold_start_s,
            "repair_rate": cfg.repair_rate, "seed": cfg.seed,
            "sla_ms": {k.value: kc.sla_ms for k, kc in cfg.server.kinds.items()}}


def _f(x: float | None, digits: int = 0, scale: float = 1.0) -> str:
    return "n/a" if x is None else f"{x * scale:.{digits}f}"


def simulate_markdown(payload: dict[str, Any]) -> str:
    from ..bench import md_table

    runs = payload["runs"]
    labels = [r["label"] for r in runs]
    lines = ["# cato-bench simulate (SIMULATED replicas)", "",
             (f"Workload: {payload['workload']}. Profile: {payload['profile']['model']} @ "
             f"{payload['profile']['hardware']} ({payload['profile']['source']}). Goodput: "
             "share of tasks meeting their SLA (TTFT for completion and generation, E2E for "
             "translation and summarization); utilization: busy / provisioned replica time."),
             ""]
    rows: list[list[str]] = []
    s = [r["summary"] for r in runs]
    rows.append(["goodput (all)"] + [_f(x["goodput"], 1, 100) + "%" for x in s])
    for kind in KINDS:
        if not any(kind in x["per_kind"] for x in s):
            continue
        pk = [x["per_kind"].get(kind) for x in s]
        rows.append([f"{kind}: goodput"] + [_f(p and p["goodput"], 1, 100) + "%" for p in pk])
        for metric in ("ttft_ms", "e2e_ms"):
            for q in ("p50", "p95"):
                rows.append([f"{kind}: {q} {metric[:-3].upper()} ms"]
                            + [_f(p and p[metric][q]) for p in pk])
    rows.append(["utilization"] + [_f(x["utilization"], 1, 100) + "%" for x in s])
    rows.append(["replica-seconds"] + [_f(x["replica_seconds"]) for x in s])
    rows.append(["mean / peak replicas"] + [f"{_f(x['mean_replicas'], 2)} / {x['peak_replicas']}"
                                            for x in s])
    rows.append(["scale-ups / downs"] + [
        f"{sum(d['action'] == 'up' for d in x['scale_decisions'])} / "
        f"{sum(d['action'] == 'down' for d in x['scale_decisions'])}" for x in s])
    rows.append(["tasks (unfinished)"] + [f"{x['tasks']} ({x['unfinished']})" for x in s])
    rows.append(["simulated s / wall s"] + [f"{x['end_s']:.0f} / {x['wall_s']:.1f}" for x in s])
    lines.append(md_table(["metric"] + labels, rows))
    return "\n".join(lines)
