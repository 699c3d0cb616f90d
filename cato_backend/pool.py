"""One model's replica pool: who is ready, what runs and waits where.

Plain synchronous bookkeeping with `now` passed in; the orchestrator drives it from the I/O
edge. A job is granted a replica slot through its `granted` future; the pool never lets more
than `max_in_flight` jobs run on a replica, so the backend's priority queues decide who runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from .profiler import OnlineProfile
from .queues import ReplicaQueue
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
    enqueued_at: float = 0.0
    started_at: float | None = None
    predicted_end: float = 0.0
    excluded: frozenset[str] = frozenset()  # replicas that already failed this job
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
    pid: int | None = None
    client: Any = None  # ReplicaClient, set when ready
    started_at: float = 0.0
    ready_at: float | None = None
    detail: str = ""
    running: set[Job] = field(default_factory=set)
    running_end_sum: float = 0.0  # sum of predicted end times of running jobs
    served: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self.queue: ReplicaQueue[Job] = ReplicaQueue(self.ordering, self.live_per_violated)

    @property
    def routable(self) -> bool:
        return self.state is ReplicaState.READY and self.healthy


class NoReplicaError(Exception):
    pass


class Pool:
    def __init__(self, model: str, profile: OnlineProfile, router: Router,
                 live_per_violated: int = 3) -> None:
        self.model = model
        self.profile = profile
        self.router = router
        self.live_per_violated = live_per_violated
        self.replicas: list[Replica] = []
        self.pending: list[Job] = []  # routed while no replica was ready
        self.decisions_by_priority = [0] * N_PRIORITIES

    def add_replica(self, replica_id: str, url: str, max_in_flight: int, now: float) -> Replica:
        r = Replica(replica_id, self.model, url, max_in_flight, self.live_per_violated,
                    self.router.ordering, started_at=now)
        self.replicas.append(r)
        return r

    def replica(self, replica_id: str) -> Replica:
        for r in self.replicas:
            if r.id == replica_id:
                return r
        raise KeyError(replica_id)

    # -- the router's view ---------------------------------------------------------------

    def snapshot(self, now: float, exclude: frozenset[str] = frozenset()) -> PoolSnapshot:
        rs = self.replicas
        running = np.fromiter((len(r.running) for r in rs), np.int64, len(rs))
        end_sum = np.fromiter((r.running_end_sum for r in rs), float, len(rs))
        return PoolSnapshot.build(
            ids=[r.id for r in rs],
            ready=np.fromiter((r.routable and r.id not in exclude for r in rs), bool, len(rs)),
            running=running,
            max_in_flight=np.fromiter((r.max_in_flight for r in rs), np.int64, len(rs)),
            running_left_s=np.maximum(end_sum - running * now, 0.0),
            queued=np.array([r.queue.count for r in rs], np.int64).reshape(-1, N_PRIORITIES),
            queued_s=np.array([r.queue.work_s for r in rs], float).reshape(-1, N_PRIORITIES),
            profile=self.profile,
        )

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
        self.pump(replica, now)
        return decision

    def pump(self, replica: Replica, now: float) -> None:
        """Start queued jobs while the replica has free slots."""
        while replica.routable and len(replica.running) < replica.max_in_flight:
            job = replica.queue.pop(now)
            if job is None:
                return
            if job.granted.done():  # cancelled while queued
                continue
            job.replica = replica
            job.started_at = now
            job.predicted_end = now + job.work_s
            replica.running.add(job)
            replica.running_end_sum += job.predicted_end
            job.granted.set_result(replica)

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
        for r in self.replicas:
            r.queue.remove(job)
        if not job.granted.done():
            job.granted.cancel()
        self.finish(job, now, ok)

    # -- replica lifecycle ---------------------------------------------------------------

    def mark_ready(self, replica: Replica, client: Any, now: float) -> None:
        replica.client = client
        replica.state = ReplicaState.READY
        replica.healthy = True
        replica.ready_at = now
        self._reroute_pending(now)

    def set_health(self, replica: Replica, healthy: bool, now: float) -> None:
        if replica.healthy == healthy:
            return
        replica.healthy = healthy
        if healthy:
            self.pump(replica, now)
            self._reroute_pending(now)
        else:
            self._evacuate(replica, now)

    def mark_stopped(self, replica: Replica, now: float, detail: str = "") -> None:
        replica.state = ReplicaState.STOPPED
        replica.detail = detail
        self._evacuate(replica, now)

    def _evacuate(self, replica: Replica, now: float) -> None:
        """Hand a replica's queued jobs to the others (nothing accepted is dropped)."""
        jobs = [j for j in replica.queue.items() if not j.granted.done()]
        for j in jobs:
            replica.queue.remove(j)
        for j in jobs:
            self.submit(j, now)

    def _reroute_pending(self, now: float) -> None:
        jobs, self.pending = self.pending, []
        for j in jobs:
            if not j.granted.done():
                self.submit(j, now)

    def _occupancy_s(self, node: NodeRequest, replica: Replica) -> float:
        """How long the job will hold its slot: its whole generation, whatever its SLA metric."""
        batch = min(len(replica.running) + len(replica.queue) + 1, replica.max_in_flight)
        return self.profile.service_s(node.prompt_tokens, node.output_tokens, batch)

    # -- reporting -----------------------------------------------------------------------

    def ready_count(self) -> int:
        return sum(r.routable for r in self.replicas)
