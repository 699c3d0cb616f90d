"""Prometheus metrics (names start with `cato_`) and the goodput the status page shows.

Task outcomes and latencies are recorded as they happen; pool state (queue lengths, replica
states) is read at scrape time by a collector, so there is no gauge to keep in step.

Per tenant: `cato_tenant_tasks_total{tenant,kind,outcome}` (beside the unlabelled-by-tenant
`cato_tasks_total`, whose series stay as they were), `cato_tenant_goodput_ratio{tenant}`,
`cato_tenant_in_flight{tenant}` and `cato_rejected_requests_total{tenant,reason}`. Tenant
values are the auth file's tenants and "anonymous" (no auth, or no valid token), so the
label's cardinality is bounded by that file.
"""

from __future__ import annotations

from collections import Counter as _Counter
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .clock import Clock
from .kinds import TaskKind
from .pool import Pool, ReplicaState

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 8, 12, 20, 30, 60)
OUTCOMES = ("met", "violated", "error", "cancelled")


class Metrics:
    def __init__(self, pools: Mapping[str, Pool], clock: Clock) -> None:
        self.registry = CollectorRegistry()
        self.tasks = Counter("cato_tasks", "Tasks by kind and outcome (met / violated its SLA, "
                             "error, cancelled)", ["kind", "outcome"], registry=self.registry)
        self.ttft = Histogram("cato_ttft_seconds", "Time to first token of a task",
                              ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.e2e = Histogram("cato_e2e_seconds", "End-to-end time of a task",
                             ["kind"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.tenant_tasks = Counter("cato_tenant_tasks", "Tasks by tenant, kind and outcome",
                                    ["tenant", "kind", "outcome"], registry=self.registry)
        self.rejected = Counter("cato_rejected_requests", "Requests refused before they ran, "
                                "by tenant and reason (unauthorized, rate_limited, "
                                "tenant_in_flight, client_streams)", ["tenant", "reason"],
                                registry=self.registry)
        self.outcomes: _Counter[tuple[str, str]] = _Counter()
        self.tenant_outcomes: _Counter[tuple[str, str]] = _Counter()  # (tenant, outcome)
        self.tenant_in_flight: Callable[[], Mapping[str, int]] = dict  # set by the server
        self._children: dict[tuple, object] = {}  # (metric, label values) -> child
        self.registry.register(_PoolCollector(pools, self, clock))

    def record(self, kind: str, outcome: str, ttft_s: float | None = None,
               e2e_s: float | None = None, tenant: str = "anonymous") -> None:
        self._child(self.tasks, kind, outcome).inc()
        self.outcomes[(kind, outcome)] += 1
        self._child(self.tenant_tasks, tenant, kind, outcome).inc()
        self.tenant_outcomes[(tenant, outcome)] += 1
        if ttft_s is not None:
            self._child(self.ttft, kind).observe(ttft_s)
        if e2e_s is not None:
            self._child(self.e2e, kind).observe(e2e_s)

    def _child(self, metric, *labels: str):
        """`metric.labels(*labels)`, kept: `.labels()` checks and locks on every call."""
        key = (metric, labels)
        if (child := self._children.get(key)) is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def reject(self, tenant: str, reason: str) -> None:
        self.rejected.labels(tenant, reason).inc()

    def goodput_by_tenant(self) -> dict[str, dict[str, float | int | None]]:
        """Per tenant, all kinds together: as `goodput`."""
        out: dict[str, dict[str, float | int | None]] = {}
        for tenant in sorted({t for t, _ in self.tenant_outcomes}):
            met = self.tenant_outcomes[(tenant, "met")]
            total = (met + self.tenant_outcomes[(tenant, "violated")]
                     + self.tenant_outcomes[(tenant, "error")])
            out[tenant] = {"goodput": met / total if total else None, "met": met,
                           "total": total, "cancelled": self.tenant_outcomes[(tenant, "cancelled")]}
        return out

    def goodput(self) -> dict[str, dict[str, float | int | None]]:
        """Per kind: share of finished tasks (met + violated + error) that met their SLA.
        Cancelled tasks are neither good nor bad: the developer moved on."""
        out: dict[str, dict[str, float | int | None]] = {}
        for kind in [k.value for k in TaskKind]:
            met = self.outcomes[(kind, "met")]
            total = met + self.outcomes[(kind, "violated")] + self.outcomes[(kind, "error")]
            out[kind] = {"goodput": met / total if total else None, "met": met, "total": total,
                         "cancelled": self.outcomes[(kind, "cancelled")]}
        return out


class _PoolCollector:
    def __init__(self, pools: Mapping[str, Pool], metrics: Metrics, clock: Clock) -> None:
        self.pools = pools
        self.metrics = metrics
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        queue = GaugeMetricFamily("cato_queue_length", "Requests waiting in a replica's queue",
                                  labels=["model", "replica"])
        running = GaugeMetricFamily("cato_running_requests", "Requests running on a replica",
                                    labels=["model", "replica"])
        state = GaugeMetricFamily("cato_replica_state", "1 for the replica's current state",
                                  labels=["model", "replica", "state"])
        pending = GaugeMetricFamily("cato_pending_requests", "Requests waiting for any replica "
                                    "to become ready", labels=["model"])
        decisions = CounterMetricFamily("cato_router_decisions", "Router decisions by the "
                                        "priority they gave (0 violated, 1 at risk, 2 on time)",
                                        labels=["model", "priority"])
        now = self.clock.now()
        busy = CounterMetricFamily("cato_replica_busy_seconds", "Time a replica had at least "
                                   "one request running", labels=["model", "replica"])
        provisioned = CounterMetricFamily("cato_replica_provisioned_seconds", "Replica time "
                                          "spent, cold start included", labels=["model", "replica"])
        utilization = GaugeMetricFamily("cato_utilization_ratio", "Busy over provisioned "
                                        "replica time, whole pool", labels=["model"])
        scaling = CounterMetricFamily("cato_autoscaler_decisions", "Autoscaler decisions that "
                                      "changed the pool (last 50 kept)", labels=["model", "action"])
        for model, pool in self.pools.items():
            pending.add_metric([model], len(pool.pending))
            for r in pool.replicas:
                b, p = r.utilization(now)
                busy.add_metric([model, r.id], b)
                provisioned.add_metric([model, r.id], p)
            b, p = pool.utilization(now)
            if p > 0:
                utilization.add_metric([model], b / p)
            for action in ("up", "down"):
                scaling.add_metric([model, action],
                                   sum(d.action == action for d in pool.scale_log))
            for prio, n in enumerate(pool.decisions_by_priority):
                decisions.add_metric([model, str(prio)], n)
            for r in pool.replicas:
                queue.add_metric([model, r.id], len(r.queue))
                running.add_metric([model, r.id], len(r.running))
                for s in ReplicaState:
                    state.add_metric([model, r.id, s.value], float(r.state is s))
        goodput = GaugeMetricFamily("cato_goodput_ratio", "Share of finished tasks that met "
                                    "their SLA", labels=["kind"])
        for kind, g in self.metrics.goodput().items():
            if g["goodput"] is not None:
                goodput.add_metric([kind], g["goodput"])
        tenant_goodput = GaugeMetricFamily("cato_tenant_goodput_ratio", "Share of a tenant's "
                                           "finished tasks that met their SLA", labels=["tenant"])
        for tenant, g in self.metrics.goodput_by_tenant().items():
            if g["goodput"] is not None:
                tenant_goodput.add_metric([tenant], g["goodput"])
        in_flight = GaugeMetricFamily("cato_tenant_in_flight", "Tasks a tenant has admitted "
                                      "(queued or running)", labels=["tenant"])
        for tenant, n in sorted(self.metrics.tenant_in_flight().items()):
            in_flight.add_metric([tenant], n)
        return [queue, running, state, pending, decisions, goodput, busy, provisioned,
                utilization, scaling, tenant_goodput, in_flight]
