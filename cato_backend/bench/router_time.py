"""`cato-bench router`: how long a routing decision takes, by pool size.

For each pool size a seeded, realistic pool is built from live `Replica` objects (random
running counts, queued work in every priority class, some replicas starting or unhealthy),
then timed with `time.perf_counter_ns` around each call, after a warm-up, with the garbage
collector on (as in the server):
- `decide`: `Router.decide(request, snapshot, now)` of the slack-aware router and the three
  baselines, over a mix of requests whose deadlines are already violated, at risk or on time;
- `snapshot+decide`: `Pool.snapshot(now)` (what the server builds from live replica state
  before every decision) followed by the slack-aware `decide`, each timed, and their sum.
"""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import (
    environment,
    environment_note,
    finish_environment,
    fmt,
    md_table,
    profile_record,
    resolve_profile,
    summary,
    write_results,
)

TARGET_US = 50.0
TARGET_REPLICAS = 1000
POLICIES = ("cato", "cato_plus", "round_robin", "p2c", "least_loaded", "slo_tier")


@dataclass
class RouterConfig:
    replicas: list[int] = field(default_factory=lambda: [10, 100, 1000, 10000])
    decisions: int = 50000  # timed decide() calls per policy per pool size
    snapshots: int = 2000  # timed snapshot+decide repetitions per pool size
    warmup: int = 500
    max_seconds: float = 10.0  # cap per timed loop
    seed: int = 0
    profile: str | None = None
    progress: bool = True
    # Pool state (shares of replicas): not ready, and of the ready ones how busy they are.
    not_ready_share: float = 0.05
    unhealthy_share: float = 0.02
    max_in_flight: int = 8
    distinct_requests: int = 1000
    request_mix: dict[str, float] = field(
        default_factory=lambda: {"violated": 0.2, "at_risk": 0.2, "on_time": 0.6})


# -- the pool ---------------------------------------------------------------------------

def build_pool(n: int, cfg: RouterConfig, profile: Any, now: float, rng: random.Random):
    """A Pool of n replicas in a random but plausible state (needs a running event loop:
    a Job's `granted` future is made on it)."""
    from ..pool import Job, Pool, ReplicaState
    from ..router import NodeRequest, SlackAwareRouter

    pool = Pool("bench", profile, SlackAwareRouter(profile))
    stats = {"starting": 0, "unhealthy": 0, "running": 0, "queued": [0, 0, 0]}
    for i in range(n):
        r = pool.add_replica(f"bench-{i}", f"http://10.0.{i // 256}.{i % 256}:8000",
                             cfg.max_in_flight, now - 600.0)
        u = rng.random()
        if u < cfg.not_ready_share:
            stats["starting"] += 1  # still starting: no work yet
            continue
        r.state = ReplicaState.READY
        r.ready_at = now - 300.0
        if u < cfg.not_ready_share + cfg.unhealthy_share:
            r.healthy = False
            stats["unhealthy"] += 1
        # Load: a quarter idle-ish, half busy, a quarter saturated with a backlog.
        band = rng.random()
        if band < 0.25:
            running, backlog = rng.randint(0, cfg.max_in_flight // 2), 0
        elif band < 0.75:
            running, backlog = rng.randint(cfg.max_in_flight // 2, cfg.max_in_flight), 0
        else:
            running, backlog = cfg.max_in_flight, rng.randint(1, 3 * cfg.max_in_flight)
        for _ in range(running):
            work = rng.uniform(0.05, 8.0)
            job = Job(NodeRequest(now + rng.uniform(-1, 20), rng.randint(16, 1024),
                                  rng.randint(8, 512), rng.random() < 0.5), work_s=work)
            job.replica, job.started_at = r, now - rng.uniform(0, work)
            job.predicted_end = job.started_at + work
            r.running.add(job)
            r.running_end_sum += job.predicted_end
        stats["running"] += running
        # Backlog in every priority class (violated, at risk, on time).
        for _ in range(backlog):
            prio = rng.choices((0, 1, 2), weights=(1, 2, 4))[0]
            deadline = now + (rng.uniform(-5, 0) if prio == 0 else rng.uniform(0.05, 30))
            job = Job(NodeRequest(deadline, rng.randint(16, 1024), rng.randint(8, 512),
                                  rng.random() < 0.5))
            r.queue.push(job, prio, deadline, rng.uniform(0.05, 8.0))
            stats["queued"][prio] += 1
        pool.sync(r)  # the replica was changed directly, not through the pool's methods
    return pool, stats


def make_requests(cfg: RouterConfig, profile: Any, now: float, rng: random.Random):
    """Requests with deadlines already violated, at risk (tighter than any replica can do)
    or on time (roomy), in the configured mix."""
    from ..router import NodeRequest

    kinds = list(cfg.request_mix)
    weights = [cfg.request_mix[k] for k in kinds]
    reqs = []
    for _ in range(cfg.distinct_requests):
        kind = rng.choices(kinds, weights)[0]
        prompt, out = rng.randint(16, 1024), rng.randint(8, 512)
        ttft_first = rng.random() < 0.5
        if kind == "violated":
            slack = -rng.uniform(0.001, 5.0)
        elif kind == "at_risk":
            slack = rng.uniform(0.0, 0.9) * profile.ttft_s(prompt)
        else:
            slack = rng.uniform(5.0, 60.0)
        reqs.append(NodeRequest(now + slack, prompt, out, ttft_first))
    return reqs


# -- timing -----------------------------------------------------------------------------

def _timer_overhead_ns(reps: int = 20000) -> float:
    clock = time.perf_counter_ns
    samples = np.empty(reps, dtype=np.int64)
    for i in range(reps):
        t0 = clock()
        samples[i] = clock() - t0
    return float(np.median(samples))


def time_decide(router: Any, snap: Any, reqs: list, now: float, n: int, warmup: int,
                max_seconds: float, bar: Any) -> tuple[np.ndarray, list[int]]:
    """Per-call ns of router.decide over the requests (cycled); also the priority counts."""
    clock = time.perf_counter_ns
    m = len(reqs)
    for i in range(warmup):
        router.decide(reqs[i % m], snap, now)
    gc.collect()
    samples = np.empty(n, dtype=np.int64)
    prio = [0, 0, 0, 0]  # violated, at risk, on time, no replica
    stop_at = clock() + int(max_seconds * 1e9)
    done = 0
    for i in range(n):
        req = reqs[i % m]
        t0 = clock()
        d = router.decide(req, snap, now)
        samples[i] = clock() - t0
        prio[d.priority if d.replica_id is not None else 3] += 1
        done = i + 1
        if bar is not None and done % 1000 == 0:
            bar.update(1000)
        if done >= 200 and samples[i] and (done & 255) == 0 and clock() > stop_at:
            break
    if bar is not None:
        bar.update(done % 1000 + (n - done))
    return samples[:done], prio


def time_snapshot_decide(pool: Any, router: Any, reqs: list, now: float, n: int, warmup: int,
                         max_seconds: float, bar: Any) -> dict[str, np.ndarray]:
    """Per repetition: ns of pool.snapshot(now) and of the decide on it (paired)."""
    clock = time.perf_counter_ns
    m = len(reqs)
    for i in range(min(warmup, 50)):
        router.decide(reqs[i % m], pool.snapshot(now), now)
    gc.collect()
    snap_ns = np.empty(n, dtype=np.int64)
    dec_ns = np.empty(n, dtype=np.int64)
    stop_at = clock() + int(max_seconds * 1e9)
    done = 0
    for i in range(n):
        t = now + i * 1e-4  # time moves on, as it does between decisions
        t0 = clock()
        snap = pool.snapshot(t)
        t1 = clock()
        router.decide(reqs[i % m], snap, t)
        t2 = clock()
        snap_ns[i], dec_ns[i] = t1 - t0, t2 - t1
        done = i + 1
        if bar is not None and done % 100 == 0:
            bar.update(100)
        if done >= 50 and clock() > stop_at:
            break
    if bar is not None:
        bar.update(done % 100 + (n - done))
    return {"snapshot": snap_ns[:done], "decide": dec_ns[:done],
            "total": snap_ns[:done] + dec_ns[:done]}


def _us(samples_ns: np.ndarray) -> dict[str, Any]:
    return {k: (v / 1000.0 if isinstance(v, float) else v)
            for k, v in summary(samples_ns.astype(float)).items()}


async def _measure(cfg: RouterConfig, profile_base: Any, bar: Any) -> list[dict[str, Any]]:
    from ..profiler import OnlineProfile
    from ..router import make_router

    results = []
    for n in cfg.replicas:
        rng = random.Random(cfg.seed * 1_000_003 + n)
        profile = OnlineProfile(profile_base)
        now = 10_000.0
        t_build = time.perf_counter()
        pool, stats = build_pool(n, cfg, profile, now, rng)
        build_s = time.perf_counter() - t_build
        reqs = make_requests(cfg, profile, now, rng)
        snap = pool.snapshot(now)
        entry: dict[str, Any] = {
            "replicas": n, "pool_state": {**stats, "ready": int(snap.ready.sum())},
            "pool_build_s": build_s, "decide_us": {}, "priorities": {},
        }
        for name in POLICIES:
            if bar is not None:
                bar.set_postfix_str(f"{n} replicas, {name}")
            router = make_router(name, profile, cfg.seed)
            samples, prio = time_decide(router, snap, reqs, now, cfg.decisions, cfg.warmup,
                                        cfg.max_seconds, bar)
            entry["decide_us"][name] = _us(samples)
            entry["priorities"][name] = dict(zip(("violated", "at_risk", "on_time", "none"), prio))
        if bar is not None:
            bar.set_postfix_str(f"{n} replicas, snapshot+decide")
        paired = time_snapshot_decide(pool, make_router("cato", profile, cfg.seed), reqs, now,
                                      cfg.snapshots, cfg.warmup, cfg.max_seconds, bar)
        entry["snapshot_us"] = _us(paired["snapshot"])
        entry["snapshot_plus_decide_us"] = {
            "decide_on_fresh_snapshot": _us(paired["decide"]),
            "total": _us(paired["total"]),
            "sum_of_means": (paired["snapshot"].mean() + paired["decide"].mean()) / 1000.0,
        }
        cato = entry["decide_us"]["cato"]
        total = entry["snapshot_plus_decide_us"]["total"]
        entry["target"] = {
            "us": TARGET_US,
            "decide_mean_met": cato["mean"] < TARGET_US,
            "decide_p99_met": cato["p99"] < TARGET_US,
            "snapshot_plus_decide_mean_met": total["mean"] < TARGET_US,
            "snapshot_plus_decide_p99_met": total["p99"] < TARGET_US,
        }
        results.append(entry)
        del pool, snap
        gc.collect()
    return results


def run_router(cfg: RouterConfig, out: str | Path, name: str = "router") -> dict[str, Any]:
    env = environment()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cato-bench-") as tmpdir:
        profile_path, profile, source = resolve_profile(cfg.profile, tmpdir)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        total = len(cfg.replicas) * (len(POLICIES) * cfg.decisions + cfg.snapshots)
        bar = tqdm(total=total, desc="router", unit="call", unit_scale=True, file=sys.stderr,
                   leave=False)
    try:
        timer_ns = _timer_overhead_ns()
        results = asyncio.run(_measure(cfg, profile, bar))
    finally:
        if bar is not None:
            bar.close()
    finish_environment(env)
    payload = {
        "benchmark": "router",
        "description": "router decision time (decide on a prebuilt snapshot) and pool snapshot "
                       "time, per pool size; perf_counter_ns around each call, GC on",
        "config": asdict(cfg),
        "environment": env,
        "profile": profile_record(profile_path, profile, source),
        "timer_overhead_ns_median": timer_ns,
        "target": {"us_per_decision": TARGET_US, "at_replicas": TARGET_REPLICAS},
        "results": results,
        "elapsed_s": time.monotonic() - t0,
    }
    md = router_markdown(payload)
    write_results(out, name, payload, md)
    return payload


def router_markdown(p: dict[str, Any]) -> str:
    rows = []
    for r in p["results"]:
        for name in POLICIES:
            d = r["decide_us"][name]
            rows.append([r["replicas"], f"decide ({name})", d["n"], fmt(d["mean"]),
                         fmt(d["p50"]), fmt(d["p99"])])
        s, t = r["snapshot_us"], r["snapshot_plus_decide_us"]["total"]
        rows.append([r["replicas"], "Pool.snapshot(now)", s["n"], fmt(s["mean"]), fmt(s["p50"]),
                     fmt(s["p99"])])
        rows.append([r["replicas"], "snapshot + decide (cato), measured together", t["n"],
                     fmt(t["mean"]), fmt(t["p50"]), fmt(t["p99"])])
    table = md_table(["replicas", "what", "calls", "mean us", "p50 us", "p99 us"], rows)

    verdicts = []
    for r in p["results"]:
        if r["replicas"] != TARGET_REPLICAS:
            continue
        tg, d = r["target"], r["decide_us"]["cato"]
        t = r["snapshot_plus_decide_us"]["total"]
        verdicts.append(
            f"At {TARGET_REPLICAS} replicas: `decide` (cato) mean {d['mean']:.1f} us, p99 "
            f"{d['p99']:.1f} us -> target < {TARGET_US:g} us "
            f"**{'met' if tg['decide_mean_met'] else 'NOT met'}** (mean), "
            f"**{'met' if tg['decide_p99_met'] else 'NOT met'}** (p99); with the snapshot the "
            f"server builds per decision: mean {t['mean']:.1f} us, p99 {t['p99']:.1f} us -> "
            f"**{'met' if tg['snapshot_plus_decide_mean_met'] else 'NOT met'}** (mean), "
            f"**{'met' if tg['snapshot_plus_decide_p99_met'] else 'NOT met'}** (p99).")
    if not verdicts:
        verdicts.append(f"({TARGET_REPLICAS} replicas not in this run: target not evaluated.)")
    env, prof = p["environment"], p["profile"]
    mix = ", ".join(f"{k} {v:g}" for k, v in p["config"]["request_mix"].items())
    return "\n".join([
        "# cato-bench router: decision time (microseconds per call)",
        "",
        (f"Seeded pools of live replica objects ({p['config']['not_ready_share']:.0%} starting, "
        f"{p['config']['unhealthy_share']:.0%} unhealthy, running 0-{p['config']['max_in_flight']}"
        f", a backlog in every priority class on a quarter of them); request mix {mix}; "
        f"profile {prof['model']} @ {prof['hardware']} ({prof['source']}). "
        f"perf_counter_ns per call (its own cost, ~{p['timer_overhead_ns_median']:.0f} ns, is "
        f"included), after a warm-up, GC on."),
        "",
        table,
        "",
        *verdicts,
        "",
        ("The target is Algorithm 1's (`cato`, the default). `cato_plus` (ours, beyond the "
         "paper) walks every ready replica's running requests and queue for each decision, so "
         "its cost grows with the pool's size and backlog: it is meant for pools of tens of "
         "replicas, and its rows show what it costs beyond that."),
        "",
        environment_note(env, p["elapsed_s"]),
    ])
