"""What a simulation measures, and its summary.

Definitions (the same words as the server's status and the burst benchmark):
- goodput: share of tasks that met their SLA (TTFT for completion and generation, E2E for
  translation and summarization, judged as `Orchestrator._done` judges). A task still
  unfinished when the run stops counts as not met.
- TTFT: arrival to the first token of the task's first output node; E2E: arrival to the end.
- replica-seconds: provisioned replica time, from the start request (cold start included) to
  the stop, as `Pool.utilization` counts it; utilization: busy / provisioned, where a replica
  is busy while at least one request runs on it (the server's definition).
- replicas over time: a step function, one point per change, of the replicas starting,
  ready and draining (from each replica's start, ready, drain and stop times).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..router import N_PRIORITIES

if TYPE_CHECKING:
    from .run import Simulation


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values.size else None


class SimRecorder:
    """Per-task and per-node records, kept as flat lists (cheap to append)."""

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.kind_index = {k: i for i, k in enumerate(kinds)}
        self.n_tasks = 0  # started
        self.started = [0] * len(kinds)  # per kind
        self.t_kind: list[int] = []
        self.t_arrival: list[float] = []
        self.t_ttft_ms: list[float] = []  # nan where no first token
        self.t_e2e_ms: list[float] = []
        self.t_met: list[bool] = []
        self.n_nodes = 0
        self.n_nodes_met = 0
        self.node_queue_s = 0.0

    def start(self, kind_i: int) -> str:
        """A task started; returns its id."""
        self.started[kind_i] += 1
        self.n_tasks += 1
        return str(self.n_tasks - 1)

    def task(self, kind_i: int, arrival: float, ttft_ms: float | None, e2e_ms: float,
             met: bool) -> None:
        self.t_kind.append(kind_i)
        self.t_arrival.append(arrival)
        self.t_ttft_ms.append(np.nan if ttft_ms is None else ttft_ms)
        self.t_e2e_ms.append(e2e_ms)
        self.t_met.append(met)

    def node(self, job: Any, replica: Any, grant: Any, met: bool) -> None:
        self.n_nodes += 1
        self.n_nodes_met += met
        self.node_queue_s += grant.granted_at - job.enqueued_at

    # -- the summary -----------------------------------------------------------------------

    def summary(self, sim: Simulation, end: float, last_arrival: float,
                wall_s: float) -> dict[str, Any]:
        kind = np.asarray(self.t_kind, dtype=np.int64)
        ttft = np.asarray(self.t_ttft_ms, dtype=float)
        e2e = np.asarray(self.t_e2e_ms, dtype=float)
        met = np.asarray(self.t_met, dtype=bool)
        started = self.started
        per_kind: dict[str, Any] = {}
        for i, k in enumerate(self.kinds):
            sel = kind == i
            n = int(started[i])
            if n == 0:
                continue
            t, e = ttft[sel], e2e[sel]
            t = t[~np.isnan(t)]
            per_kind[k] = {
                "tasks": n,
                "finished": int(sel.sum()),
                "met": int(met[sel].sum()),
                "goodput": round(float(met[sel].sum()) / n, 4),
                "ttft_ms": {"p50": _pct(t, 50), "p95": _pct(t, 95), "p99": _pct(t, 99)},
                "e2e_ms": {"p50": _pct(e, 50), "p95": _pct(e, 95), "p99": _pct(e, 99)},
            }
        pool = sim.pool
        busy, provisioned = pool.utilization(end)
        timeline = replica_timeline(sim, end)
        return {
            "tasks": self.n_tasks,
            "finished": int(met.size),
            "unfinished": self.n_tasks - int(met.size),
            "goodput": round(float(met.sum()) / self.n_tasks, 4) if self.n_tasks else None,
            "per_kind": per_kind,
            "nodes": self.n_nodes,
            "node_slack_met": round(self.n_nodes_met / self.n_nodes, 4) if self.n_nodes else None,
            "node_mean_queue_s": round(self.node_queue_s / self.n_nodes, 4) if self.n_nodes else None,
            "route_priorities": dict(zip(("violated", "at_risk", "on_time"),
                                         pool.decisions_by_priority[:N_PRIORITIES])),
            "replica_seconds": round(provisioned, 1),
            "busy_replica_seconds": round(busy, 1),
            "utilization": round(busy / provisioned, 4) if provisioned > 0 else None,
            "mean_replicas": round(provisioned / end, 3) if end > 0 else None,
            "peak_replicas": max((p[1] + p[2] + p[3] for p in timeline), default=0),
            "replicas_over_time": {"columns": ["t", "starting", "ready", "draining"],
                                   "points": timeline},
            "scale_decisions": [
                {"t": round(d.now, 3), "action": d.action, "current": d.current,
                 "target": d.target, "reason": d.reason} for d in sim.decisions],
            "last_arrival_s": round(last_arrival, 3),
            "end_s": round(end, 3),
            "events": sim.events,
            "wall_s": round(wall_s, 3),
        }


def replica_timeline(sim: Simulation, end: float) -> list[list[float | int]]:
    """[t, starting, ready, draining] at every change (times rounded to 1 ms)."""
    deltas: dict[float, list[int]] = {}

    def add(t: float | None, col: int, d: int) -> None:
        if t is None:
            return
        row = deltas.setdefault(round(t, 3), [0, 0, 0])
        row[col] += d

    for r in sim.pool.replicas:
        stop = r.stopped_at
        drain = sim._drain_at.get(r.id)
        if r.ready_at is None:  # never ready: starting until stopped (or the end)
            add(r.started_at, 0, 1)
            add(stop, 0, -1)
            continue
        if r.ready_at > r.started_at:
            add(r.started_at, 0, 1)
            add(r.ready_at, 0, -1)
        add(r.ready_at, 1, 1)
        if drain is not None:
            add(drain, 1, -1)
            add(drain, 2, 1)
            add(stop, 2, -1)
        else:
            add(stop, 1, -1)
    points: list[list[float | int]] = []
    cur = [0, 0, 0]
    for t in sorted(deltas):
        if t > end:
            break
        cur = [a + b for a, b in zip(cur, deltas[t])]
        if points and points[-1][1:] == cur:
            continue
        points.append([t, *cur])
    return points

