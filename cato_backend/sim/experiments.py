"""The paper's experiments, in the simulator (issue #6 item 3): plain data in, plain data out.

- (a) `long`: long-output tasks (generation + translation) on a fixed pool, the load swept.
- (b) `short`: short tasks (completion + summarization) on a fixed pool, the load swept.
- (c) `mixed`: all four kinds at once on an autoscaled pool, the load stepping up and down
  through the paper's levels (low, moderate, high, moderate, low); `mixed_over` is the same
  with a replica cap below the peak's need, so that the highest load overloads the pool.

Besides the paper's CATO and the baselines, every experiment runs CATO+ (ours, beyond the
paper: the slot-aware router `cato_plus` and, autoscaled, Algorithm 2 with consolidation) and
the offline oracle (EDF with known service times, `oracle.py`; autoscaled experiments give it
the whole replica cap from the start, the most goodput the cap allows).

Load: every kind of an experiment at one of the paper's per-kind rates (0.67 ... 3.33 req/s,
`workloads.PAPER_RATE_LEVELS`) times a `scale`. The paper's pool (12 NPUs running a 7B model)
and ours (simulated replicas of the measured SmolLM2-on-CPU profile, with the corpus' short
prompts and outputs) differ in speed by an unknown factor, so the scale of each experiment is a
fixed constant chosen once, before comparing policies, so that the paper's lowest level is a
light load and its highest is past this pool's saturation (see `ReportConfig`). The same scale
serves every policy; nothing here is tuned per policy.

Every policy of an experiment runs on the same requests (one seed). What each run returns is the
simulator's summary (`metrics.SimRecorder.summary`) plus what the report needs beyond it:
goodput of the TTFT-critical kinds (completion + generation), goodput per phase, and latency
quantiles for CDF plots. Denominators are the requests issued (a task unfinished when the run
stops counts as not met), as in the summary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..profiles import EngineProfile
from .corpus import Corpus
from .requests import Request
from .run import SimConfig, Simulation
from .workloads import PAPER_RATE_LEVELS, paper_rates, piecewise, poisson

LONG_KINDS = ("generation", "translation")
SHORT_KINDS = ("completion", "summarization")
ALL_KINDS = ("completion", "generation", "translation", "summarization")
TTFT_CRITICAL = ("completion", "generation")

# (label, router, scaling); fixed pools use the first two fields only.
FIXED_POLICIES: tuple[tuple[str, str], ...] = (
    ("CATO", "cato"),
    ("CATO+ (ours)", "cato_plus"),
    ("round robin", "round_robin"),
    ("p2c (Ray Serve's router)", "p2c"),
    ("least loaded", "least_loaded"),
    ("slo_tier (llm-d style)", "slo_tier"),
    ("oracle (EDF, known service times)", "oracle"),
)
FIXED_AT_MAX = "max"  # "scaling" of the autoscaled oracle: max_replicas ready from the start
# The routers other than CATO's get Ray Serve's default autoscaler (the autoscaler a deployment
# without CATO would have); the last two rows are ablations, each swapping one of the two halves.
SCALED_POLICIES: tuple[tuple[str, str, str], ...] = (
    ("CATO", "cato", "cato"),
    ("CATO+ (ours)", "cato_plus", "cato_plus"),
    ("round robin + Ray scaler", "round_robin", "ray"),
    ("Ray Serve-like (p2c + Ray scaler)", "p2c", "ray"),
    ("least loaded + Ray scaler", "least_loaded", "ray"),
    ("slo_tier + Ray scaler", "slo_tier", "ray"),
    ("ablation: CATO router + Ray scaler", "cato", "ray"),
    ("ablation: p2c + CATO scaler", "p2c", "cato"),
    ("oracle (EDF, known service times; all replicas)", "oracle", FIXED_AT_MAX),
)
CATO_LABEL = "CATO"
RAY_LABEL = "Ray Serve-like (p2c + Ray scaler)"
RAY_FIXED_LABEL = "p2c (Ray Serve's router)"
PLUS_LABEL = "CATO+ (ours)"
ORACLE_ROUTER = "oracle"


@dataclass
class ReportConfig:
    """Everything the report's numbers depend on (written into report.json as is)."""

    seed: int = 0
    profile: str | None = None  # engine profile (file in profiles/ or a path); None: measured
    # (a) and (b): a fixed pool, one run per level and policy
    replicas: int = 8
    duration_s: float = 1200.0  # seconds of arrivals per run
    levels: tuple[float, ...] = PAPER_RATE_LEVELS  # paper rates, req/s per kind
    # Scales, calibrated once with round robin and CATO (600-s runs, 8 replicas, seed 0): the
    # long mix's goodput stays >= 97% up to 7 req/s per kind and falls past 8 (to 6-42% at 10),
    # the short mix's stays 100% up to 16 req/s per kind and collapses past 24. Levels x scale:
    # long 2.0 ... 10.0 req/s per kind, short 6.0 ... 30.0.
    long_scale: float = 3.0
    short_scale: float = 9.0
    # (c): all four kinds, autoscaled, phases of the paper's levels
    mixed_levels: tuple[float, ...] = (0.67, 2.0, 3.33, 2.0, 0.67)
    mixed_phase_s: float = 600.0
    mixed_scale: float = 3.0  # top phase 10 req/s per kind: ~14 replicas' worth by (a) and (b)
    mixed_initial_replicas: int = 4
    min_replicas: int = 1
    max_replicas: int = 16
    # (c) over the cap: the same schedule with a cap ~15% under the top phase's ~14 replicas
    over_max_replicas: int = 12
    fixed_policies: tuple[tuple[str, str], ...] = FIXED_POLICIES
    scaled_policies: tuple[tuple[str, str, str], ...] = SCALED_POLICIES
    cdf_points: int = 101  # quantiles kept per latency CDF

    def record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Run:
    label: str
    router: str
    scaling: str
    summary: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def _quantiles(values: np.ndarray, n: int) -> list[float] | None:
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    return [round(float(x), 2) for x in np.quantile(values, np.linspace(0, 1, n))]


def _goodput(requests: Sequence[Request], sim: Simulation, kinds: Sequence[str],
             start: float = 0.0, end: float = float("inf")) -> float | None:
    """Met / issued among the tasks of `kinds` that arrived in [start, end)."""
    issued = sum(1 for r in requests if r.kind in kinds and start <= r.t < end)
    if not issued:
        return None
    rec = sim.recorder
    want = {rec.kind_index[k] for k in kinds}
    met = sum(1 for k, t, m in zip(rec.t_kind, rec.t_arrival, rec.t_met)
              if m and k in want and start <= t < end)
    return round(met / issued, 4)


def simulate_one(requests: Sequence[Request], profile: EngineProfile, label: str, router: str,
                 scaling: str, cfg: ReportConfig, *, replicas: int,
                 phases: Sequence[tuple[float, float]] = (),
                 keep_timeline: bool = False) -> Run:
    """One policy on `requests`; `phases` are (start_s, end_s) windows for per-phase goodput."""
    sim_cfg = SimConfig(router=router, scaling=scaling, replicas=replicas,
                        min_replicas=cfg.min_replicas, max_replicas=cfg.max_replicas,
                        seed=cfg.seed)
    sim = Simulation(sim_cfg, profile)
    summary = sim.run(requests)
    if not keep_timeline:
        summary.pop("replicas_over_time", None)
        summary.pop("scale_decisions", None)
    rec = sim.recorder
    kind = np.asarray(rec.t_kind, dtype=np.int64)
    ttft = np.asarray(rec.t_ttft_ms, dtype=float)
    e2e = np.asarray(rec.t_e2e_ms, dtype=float)
    present = {r.kind for r in requests}
    cdf: dict[str, Any] = {}
    for k in ALL_KINDS:
        if k in present:
            sel = kind == rec.kind_index[k]
            cdf[k] = {"ttft_ms": _quantiles(ttft[sel], cfg.cdf_points),
                      "e2e_ms": _quantiles(e2e[sel], cfg.cdf_points)}
    critical = [k for k in TTFT_CRITICAL if k in present]
    extra = {
        "ttft_critical_goodput": _goodput(requests, sim, critical) if critical else None,
        "phases": [{"start_s": a, "end_s": b, "goodput": _goodput(requests, sim, ALL_KINDS, a, b),
                    "ttft_critical_goodput": _goodput(requests, sim, critical, a, b)}
                   for a, b in phases],
        "cdf": cdf,
        "sim_config": {"router": router, "scaling": scaling, "replicas": replicas,
                       "autoscaler": (sim_cfg.autoscaler.model_dump()
                                      if sim_cfg.autoscaler else None),
                       "max_in_flight": sim_cfg.max_in_flight,
                       "cold_start_s": sim.cold_start_s, "repair_rate": sim_cfg.repair_rate,
                       "seed": sim_cfg.seed},
    }
    return Run(label, router, scaling, summary, extra)


def fixed_sweep(name: str, kinds: Sequence[str], scale: float, cfg: ReportConfig,
                profile: EngineProfile, corpus: Corpus,
                tick: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """(a) or (b): every fixed-pool policy at every level, on one pool size."""
    levels = []
    for level in cfg.levels:
        rates = paper_rates(level, kinds)
        requests = poisson(rates, cfg.duration_s, seed=cfg.seed, scale=scale, corpus=corpus,
                           with_body=False)
        runs = []
        for label, router in cfg.fixed_policies:
            runs.append(simulate_one(requests, profile, label, router, "none", cfg,
                                     replicas=cfg.replicas))
            tick(f"{name} {level:g}x{scale:g} {router}")
        levels.append({"paper_level": level, "rate_per_kind": round(level * scale, 4),
                       "requests": len(requests), "runs": [asdict(r) for r in runs]})
    return {"name": name, "kinds": list(kinds), "scale": scale, "replicas": cfg.replicas,
            "duration_s": cfg.duration_s, "levels": levels}


def mixed_schedule(cfg: ReportConfig) -> list[tuple[float, dict[str, float]]]:
    return [(cfg.mixed_phase_s, paper_rates(level, ALL_KINDS)) for level in cfg.mixed_levels]


def mixed_autoscaled(cfg: ReportConfig, profile: EngineProfile, corpus: Corpus,
                     tick: Callable[[str], None] = lambda _: None, *,
                     name: str = "mixed") -> dict[str, Any]:
    """(c): all four kinds, autoscaled between min and max replicas, phased load."""
    phases = mixed_schedule(cfg)
    requests = piecewise(phases, seed=cfg.seed, scale=cfg.mixed_scale, corpus=corpus,
                         with_body=False)
    windows = [(i * cfg.mixed_phase_s, (i + 1) * cfg.mixed_phase_s) for i in range(len(phases))]
    runs = []
    for label, router, scaling in cfg.scaled_policies:
        at_max = scaling == FIXED_AT_MAX
        runs.append(simulate_one(requests, profile, label, router,
                                 "none" if at_max else scaling, cfg,
                                 replicas=cfg.max_replicas if at_max
                                 else cfg.mixed_initial_replicas,
                                 phases=windows, keep_timeline=True))
        tick(f"{name} {router}+{scaling}")
    return {"name": name, "kinds": list(ALL_KINDS), "scale": cfg.mixed_scale,
            "max_replicas": cfg.max_replicas,
            "phases": [{"start_s": a, "end_s": b, "paper_level": lv,
                        "rate_per_kind": round(lv * cfg.mixed_scale, 4)}
                       for (a, b), lv in zip(windows, cfg.mixed_levels)],
            "requests": len(requests), "runs": [asdict(r) for r in runs]}


def mixed_over_cap(cfg: ReportConfig, profile: EngineProfile, corpus: Corpus,
                   tick: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """(c) with `over_max_replicas` as the cap: the highest load overloads the pool."""
    return mixed_autoscaled(replace(cfg, max_replicas=cfg.over_max_replicas), profile, corpus,
                            tick, name="mixed_over")


def count_runs(cfg: ReportConfig) -> int:
    return 2 * len(cfg.levels) * len(cfg.fixed_policies) + 2 * len(cfg.scaled_policies)
