"""`cato-bench simulate --speed`: how fast the simulator itself is (issue #6, item 1).

Two scenarios, each one simulation, timed with perf_counter around `Simulation.run` (the
lazy, seeded synthetic Poisson generator of the requests included):
- hour: one hour of traffic at 100 requests/s (the four kinds equally) over a fixed pool of
  100 replicas, CATO router; target: under 60 s of wall time;
- scale: a fixed pool of 10,000 replicas, CATO router, 1,000 requests/s for 60 s; target: it
  completes. The router decides from a snapshot of all 10,000 replicas per LLM node, so the
  per-decision cost (`Pool.snapshot` + `decide`) is measured on the final pool and reported.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOUR_TARGET_S = 60.0


@dataclass(frozen=True)
class Scenario:
    name: str
    replicas: int
    rate: float  # requests/s in total, the four kinds equally
    duration_s: float
    target_wall_s: float | None  # None: it must complete


SCENARIOS = (
    Scenario("hour", replicas=100, rate=100.0, duration_s=3600.0, target_wall_s=HOUR_TARGET_S),
    Scenario("scale", replicas=10_000, rate=1000.0, duration_s=60.0, target_wall_s=None),
)


def _decision_cost_us(sim: Any, n: int = 2000) -> dict[str, float]:
    """Mean microseconds of the server's per-node routing work on the final pool:
    `Pool.snapshot(now)` + `router.decide`, as `Pool.submit` does them."""
    from ..router import NodeRequest

    pool, now = sim.pool, sim.clock.now()
    req = NodeRequest(deadline=now + 1.0, prompt_tokens=300, output_tokens=48,
                      to_first_token=True)
    t0 = time.perf_counter()
    for _ in range(n):
        snap = pool.snapshot(now)
    t1 = time.perf_counter()
    for _ in range(n):
        pool.router.decide(req, pool.snapshot(now), now)
    t2 = time.perf_counter()
    return {"snapshot_us": round((t1 - t0) / n * 1e6, 1),
            "snapshot_and_decide_us": round((t2 - t1) / n * 1e6, 1), "calls": n,
            "replicas": len(snap)}


def run_speed(out: str | Path, name: str = "sim_speed", profile_arg: str | None = None,
              scale: float = 1.0, progress: bool = True) -> dict[str, Any]:
    from ..bench import (
        environment,
        environment_note,
        finish_environment,
        load_average,
        resolve_profile,
        write_results,
    )
    from .cli import _progress_bar
    from .run import SimConfig, Simulation
    from .synthetic import even_rates, poisson

    env = environment()
    t_start = time.monotonic()
    path, profile, source = resolve_profile(profile_arg, None)
    results = []
    for sc in SCENARIOS:
        duration = sc.duration_s * scale
        cfg = SimConfig(router="cato", scaling="none", replicas=sc.replicas, seed=0)
        load_before = load_average()
        t0 = time.perf_counter()
        sim = Simulation(cfg, profile)
        setup_s = time.perf_counter() - t0
        bar, close = _progress_bar(progress, duration, sc.name)
        t1, c1 = time.perf_counter(), time.process_time()
        try:
            summary = sim.run(poisson(even_rates(sc.rate), duration, seed=0), bar)
        finally:
            close()
        wall, cpu = time.perf_counter() - t1, time.process_time() - c1
        cost = _decision_cost_us(sim)
        results.append({
            "scenario": sc.name, "replicas": sc.replicas, "rate_per_s": sc.rate,
            "duration_s": duration, "router": "cato", "scaling": "none",
            "max_in_flight": cfg.max_in_flight, "tasks": summary["tasks"],
            "llm_nodes": summary["nodes"], "events": summary["events"],
            "setup_s": round(setup_s, 3), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "simulated_s": summary["end_s"],
            "simulated_s_per_wall_s": round(summary["end_s"] / wall, 1),
            "tasks_per_wall_s": round(summary["tasks"] / wall),
            "us_per_task": round(wall / max(1, summary["tasks"]) * 1e6, 1),
            "target_wall_s": sc.target_wall_s * scale if sc.target_wall_s else None,
            "target_met": (wall < sc.target_wall_s * scale) if sc.target_wall_s else True,
            "load_average_before": load_before, "load_average_after": load_average(),
            "goodput": summary["goodput"], "utilization": summary["utilization"],
            "routing_cost_on_final_pool": cost,
        })
    finish_environment(env)
    env["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    payload = {
        "what": "speed of the discrete-event simulator (cato-bench simulate --speed)",
        "command": "cato-bench simulate --speed"
                   + (f" --speed-scale {scale:g}" if scale != 1 else "")
                   + (f" --profile {profile_arg}" if profile_arg else ""),
        "scale": scale,
        "profile": {"path": str(path) if path else None, "source": source,
                    "model": profile.model, "hardware": profile.hardware},
        "scenarios": results,
        "environment": env,
    }
    md = speed_markdown(payload) + "\n\n" + environment_note(env, time.monotonic() - t_start)
    write_results(out, name, payload, md)
    return payload


def speed_markdown(payload: dict[str, Any]) -> str:
    from ..bench import md_table

    rows = []
    for r in payload["scenarios"]:
        target = (f"< {r['target_wall_s']:g} s: {'met' if r['target_met'] else 'NOT met'}"
                  if r["target_wall_s"] else "completes: met")
        c = r["routing_cost_on_final_pool"]
        rows.append([r["scenario"], r["replicas"], f"{r['rate_per_s']:g}",
                     f"{r['duration_s']:g}", r["tasks"], r["events"], f"{r['wall_s']:.1f}",
                     f"{r['cpu_s']:.1f}",
                     f"{r['simulated_s_per_wall_s']:g}", f"{r['us_per_task']:g}",
                     f"{c['snapshot_and_decide_us']:g}", target,
                     f"{r['load_average_before']} -> {r['load_average_after']}"])
    return "\n".join([
        "# cato-bench simulate --speed: the simulator's own speed", "",
        (f"Command: `{payload['command']}`. Fixed pools, CATO router (`SlackAwareRouter`, "
        "a pool snapshot per LLM node, as the server routes), max_in_flight "
        f"{payload['scenarios'][0]['max_in_flight']}, seeded synthetic Poisson arrivals of "
        "the four kinds equally (sim/synthetic.py), profile "
        f"{payload['profile']['model']} @ {payload['profile']['hardware']} "
        f"({payload['profile']['source']}). Wall time of `Simulation.run`, one process, "
        "request generation included (CPU s: the process's CPU time over the same span, "
        "less sensitive to other work on the machine); replicas are SIMULATED (events at prefill end and "
        "finish, not per token)."), "",
        md_table(["scenario", "replicas", "req/s", "simulated s", "tasks", "events", "wall s",
                  "CPU s",
                  "sim s / wall s", "us / task", "snapshot+decide us (final pool)",
                  "target", "load avg 1/5/15 before -> after"], rows),
    ])
