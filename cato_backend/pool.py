"""One model's replica pool: who is ready, what runs and waits where.

Plain synchronous bookkeeping with `now` passed in; the orchestrator drives it from the I/O
edge. A job is granted a replica slot through its `granted` future; the pool never lets more
than `max_in_flight` jobs run on a replica, so the backend's priority queues decide who runs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from .profiler import OnlineProfile
from .queues import LATE_WORK_LAST, ReplicaQueue
from .router import N_PRIORITIES, NodeRequest, PoolSnapshot, RouteDecision, Router


class ReplicaState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(eq=False)
class Job:
    """One LLM node waiting for, or running on, a replica."""

    node: NodeRequest
    work_s: float = 0.0  # predicted service seconds, set when routed
    decision: RouteDecision | None = None
    replica: Replica | None = None
    queued_on: Replica | None = None  # whose queue holds it now (so cancel needs no search)
    enqueued_at: float = 0.0
    started_at: float | None = None
    predicted_end: float = 0.0
    excluded: frozenset[str] = frozenset()  # replicas that already failed this job
    node_id: str = ""  # task/node, for the autoscaler's slack events
    violation_reported: bool = False  # its VIOLATED event went out (once per node)
    granted: asyncio.Future[Replica] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(eq=False)
class Replica:
    id: str
    model: str
    url: str
    max_in_flight: int
    live_per_violated: int
    ordering: str
    state: ReplicaState = ReplicaState.STARTING
    healthy: bool = True
    unhealthy_since: float | None = None  # when health checks started failing
    pid: int | None = None
    client: Any = None  # ReplicaClient, set when ready
    started_at: float = 0.0
    ready_at: float | None = None
    detail: str = ""
    running: set[Job] = field(default_factory=set)
    running_end_sum: float = 0.0  # sum of predicted end times of running jobs
    served: int = 0
    failed: int = 0
    idle_since: float | None = None  # ready with nothing running or queued since then
    busy_s: float = 0.0  # time with at least one request running, up to busy_since
    busy_since: float | None = None
    stopped_at: float | None = None

    def utilization(self, now: float) -> tuple[float, float]:
        """(busy seconds, provisioned seconds): provisioned from the start request, cold
        start included (it is replica time spent), to the stop."""
        busy = self.busy_s + (now - self.busy_since if self.busy_since is not None else 0.0)
        end = self.stopped_at if self.stopped_at is not None else now
        return busy, max(0.0, end - self.started_at)

    def __post_init__(self) -> None:
        self.queue: ReplicaQueue[Job] = ReplicaQueue(self.ordering, self.live_per_violated)

    @property
    def routable(self) -> bool:
        return self.state is ReplicaState.READY and self.healthy


class NoReplicaError(Exception):
    pass


class Pool:
    """Replicas of one model. Besides the replica objects it keeps the router's columns (one
    array entry per replica), updated in O(1) whenever a replica's slots, queue or state
    change, so a snapshot costs a few array operations, not a pass over every replica."""

    def __init__(self, model: str, profile: OnlineProfile, router: Router,
                 live_per_violated: int = 3) -> None:
        self.model = model
        self.profile = profile
        self.router = router
        # A router that wants late work last (cato_plus, the oracle) overrides the share.
        self.live_per_violated = (LATE_WORK_LAST if getattr(router, "late_work_last", False)
                                  else live_per_violated)
        self.replicas: list[Replica] = []
        self.pending: list[Job] = []  # routed while no replica was ready
        self.decisions_by_priority = [0] * N_PRIORITIES
        # What the autoscaler reads: per-node slack outcomes (node id, time, "met" /
        # "violated" / "cancelled") and the pool's ongoing requests over time.
        self.outcomes: deque[tuple[float, str, str]] = deque(maxlen=100_000)
        self.load_samples: deque[tuple[float, int]] = deque(maxlen=10_000)
        self.scale_log: deque = deque(maxlen=50)  # the autoscaler's last decisions
        self._index: dict[str, int] = {}
        self._ids: tuple[str, ...] = ()
        self._routable = np.zeros(0, bool)
        self._running = np.zeros(0, np.int64)
        self._max_in_flight = np.zeros(0, np.int64)
        self._end_sum = np.zeros(0, float)
        self._queued = np.zeros((N_PRIORITIES, 0), np.int64)
        self._queued_s = np.zeros((N_PRIORITIES, 0), float)

    def add_replica(self, replica_id: str, url: str, max_in_flight: int, now: float) -> Replica:
        if replica_id in self._index:
            raise ValueError(f"replica {replica_id!r} already exists")
        r = Replica(replica_id, self.model, url, max_in_flight, self.live_per_violated,
                    self.router.ordering, started_at=now)
        self._index[replica_id] = len(self.replicas)
        self.replicas.append(r)
        self._ids = self._ids + (replica_id,)
        self._routable = np.append(self._routable, False)
        self._running = np.append(self._running, 0)
        self._max_in_flight = np.append(self._max_in_flight, max_in_flight)
        self._end_sum = np.append(self._end_sum, 0.0)
        self._queued = np.hstack([self._queued, np.zeros((N_PRIORITIES, 1), np.int64)])
        self._queued_s = np.hstack([self._queued_s, np.zeros((N_PRIORITIES, 1))])
        self.sync(r)
        return r

    def sync(self, r: Replica, now: float | None = None) -> None:
        """Copy one replica's state into the router's columns (and, given `now`, its idle
        clock). The pool's own methods do it; code that changes a replica directly
        (benchmarks, tests) must call it after."""
        if now is not None:
            idle = r.state is ReplicaState.READY and not r.running and not len(r.queue)
            r.idle_since = (r.idle_since if r.idle_since is not None else now) if idle else None
            if r.running and r.busy_since is None:
                r.busy_since = now
            elif not r.running and r.busy_since is not None:
                r.busy_s += now - r.busy_since
                r.busy_since = None
        i = self._index[r.id]
        self._routable[i] = r.routable
        self._running[i] = len(r.running)
        self._end_sum[i] = r.running_end_sum
        self._queued[:, i] = r.queue.count
        self._queued_s[:, i] = r.queue.work_s

    def replica(self, replica_id: str) -> Replica:
        return self.replicas[self._index[replica_id]]

    # -- the router's view ---------------------------------------------------------------

    def snapshot(self, now: float, exclude: frozenset[str] = frozenset()) -> PoolSnapshot:
        ready = self._routable.copy()
        for rid in exclude:
            if rid in self._index:
                ready[self._index[rid]] = False
        running = self._running.copy()
        return PoolSnapshot.build(
            ids=self._ids,
            ready=ready,
            running=running,
            max_in_flight=self._max_in_flight,
            running_left_s=np.maximum(self._end_sum - running * now, 0.0),
            queued=self._queued.copy(),
            queued_s=self._queued_s.copy(),
            profile=self.profile,
            schedule=self._schedule,
        )

    def _schedule(self, i: int, deadline: float) -> tuple[list[float], list[float]]:
        """Replica i's running requests' predicted ends and the live work queued ahead of a
        new request with `deadline` (`PoolSnapshot.schedule`)."""
        r = self.replicas[i]
        return [j.predicted_end for j in r.running], r.queue.live_work_ahead(deadline)

    # -- jobs ----------------------------------------------------------------------------

    def submit(self, job: Job, now: float) -> RouteDecision:
        """Route a job and queue it on its replica (or hold it until a replica is ready)."""
        decision = self.router.decide(job.node, self.snapshot(now, job.excluded), now)
        job.decision = decision
        job.enqueued_at = now
        if decision.replica_id is None:
            self.pending.append(job)
            return decision
        self.decisions_by_priority[decision.priority] += 1
        replica = self.replicas[decision.index]
        job.work_s = self._occupancy_s(job.node, replica)
        replica.queue.push(job, decision.priority, job.node.deadline, job.work_s)
        job.queued_on = replica
        self.pump(replica, now)  # syncs the replica's columns
        return decision

    def pump(self, replica: Replica, now: float) -> None:
        """Start queued jobs while the replica has free slots."""
        while replica.routable and len(replica.running) < replica.max_in_flight:
            job = replica.queue.pop(now)
            if job is None:
                break
            job.queued_on = None
            if job.granted.done():  # cancelled while queued
                continue
            job.replica = replica
            job.started_at = now
            job.predicted_end = now + job.work_s
            replica.running.add(job)
            replica.running_end_sum += job.predicted_end
            job.granted.set_result(replica)
        self.sync(replica, now)

    def finish(self, job: Job, now: float, ok: bool | None = True) -> None:
        """A running job ended (ok, failed, or None: cancelled): free its slot."""
        replica = job.replica
        if replica is None or job not in replica.running:
            return
        replica.running.discard(job)
        replica.running_end_sum -= job.predicted_end
        if not replica.running:
            replica.running_end_sum = 0.0
        if ok:
            replica.served += 1
        elif ok is False:
            replica.failed += 1
        self.pump(replica, now)

    def cancel(self, job: Job, now: float, ok: bool | None = None) -> None:
        """Forget a job wherever it is; a running one frees its slot (counted by `ok`)."""
        if job in self.pending:
            self.pending.remove(job)
        queue_of, job.queued_on = job.queued_on, None
        if queue_of is not None and queue_of.queue.remove(job):
            self.sync(queue_of, now)
        if not job.granted.done():
            job.granted.cancel()
        self.finish(job, now, ok)

    # -- replica lifecycle ---------------------------------------------------------------

    def mark_ready(self, replica: Replica, client: Any, now: float) -> None:
        replica.client = client
        replica.state = ReplicaState.READY
        replica.healthy = True
        replica.ready_at = now
        self.sync(replica, now)
        self._reroute_pending(now)
        self.rebalance(now)

    def rebalance(self, now: float) -> None:
        """Route all queued, not yet started work again, most urgent first: new capacity (a
        replica just ready) takes work from replicas with a backlog, instead of idling."""
        jobs = [j for r in self.replicas for j in self._take_queued(r, now)]
        for j in sorted(jobs, key=lambda j: j.node.deadline):
            self.submit(j, now)

    def set_health(self, replica: Replica, healthy: bool, now: float) -> None:
        if replica.healthy == healthy:
            return
        replica.healthy = healthy
        replica.unhealthy_since = None if healthy else now
        self.sync(replica, now)
        if healthy:
            self.pump(replica, now)
            self._reroute_pending(now)
        else:
            self._evacuate(replica, now)

    def mark_stopped(self, replica: Replica, now: float, detail: str = "") -> None:
        replica.state = ReplicaState.STOPPED
        replica.detail = detail
        if replica.stopped_at is None:
            replica.stopped_at = now
        self.sync(replica, now)
        self._evacuate(replica, now)

    def drain(self, replica: Replica, now: float) -> None:
        """Take no new work; hand the queue to the others; running requests finish."""
        replica.state = ReplicaState.DRAINING
        self.sync(replica, now)
        self._evacuate(replica, now)

    def _evacuate(self, replica: Replica, now: float) -> None:
        """Hand a replica's queued jobs to the others (nothing accepted is dropped)."""
        for j in self._take_queued(replica, now):
            self.submit(j, now)

    def _take_queued(self, replica: Replica, now: float) -> list[Job]:
        """Empty a replica's queue; the jobs not yet cancelled, for routing again."""
        jobs = [j for j in replica.queue.items() if not j.granted.done()]
        for j in replica.queue.items():
            replica.queue.remove(j)
            j.queued_on = None
        self.sync(replica, now)
        return jobs

    def _reroute_pending(self, now: float) -> None:
        jobs, self.pending = self.pending, []
        for j in jobs:
            if not j.granted.done():
                self.submit(j, now)

    def _occupancy_s(self, node: NodeRequest, replica: Replica) -> float:
        """How long the job will hold its slot: its whole generation, whatever its SLA metric."""
        batch = min(len(replica.running) + len(replica.queue) + 1, replica.max_in_flight)
        return self.profile.service_s(node.prompt_tokens, node.output_tokens, batch)

    # -- what the autoscaler reads --------------------------------------------------------

    def record_outcome(self, node_id: str, now: float, outcome: str) -> None:
        self.outcomes.append((now, node_id, outcome))

    def report_overdue(self, now: float) -> int:
        """A job still waiting for a replica after its deadline has violated its slack
        already: tell the autoscaler now, not when it finally finishes (a backlog would
        otherwise report its violations only as fast as the replicas work through it).
        Returns how many were reported."""
        reported = 0
        waiting = [j for r in self.replicas for j in r.queue.items()] + self.pending
        for job in waiting:
            if not job.violation_reported and job.node.deadline < now and not job.granted.done():
                job.violation_reported = True
                self.record_outcome(job.node_id, now, "violated")
                reported += 1
        return reported

    def ongoing(self) -> int:
        """Requests running or queued anywhere in the pool, or waiting for a replica."""
        return (sum(len(r.running) + len(r.queue) for r in self.replicas)
                + sum(not j.granted.done() for j in self.pending))

    def sample_load(self, now: float) -> None:
        self.load_samples.append((now, self.ongoing()))

    # -- reporting -----------------------------------------------------------------------

    def utilization(self, now: float) -> tuple[float, float]:
        """(busy, provisioned) replica-seconds over the pool's whole life."""
        pairs = [r.utilization(now) for r in self.replicas]
        return sum(b for b, _ in pairs), sum(p for _, p in pairs)

    def utilization_summary(self, now: float) -> dict[str, float | None]:
        busy, provisioned = self.utilization(now)
        return {"replica_seconds": round(provisioned, 1),
                "utilization": round(busy / provisioned, 4) if provisioned > 0 else None}

    def ready_count(self) -> int:
        return sum(r.routable for r in self.replicas)
