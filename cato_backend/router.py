"""The replica router: paper Algorithm 1 and the baselines it is compared with.

Every policy is `decide(request, snapshot, now) -> RouteDecision`: it reads a snapshot of the
pool and the time it is given, and returns plain data with a reason. It never reads the clock,
sleeps, does I/O or mutates the snapshot. Round robin keeps a cursor and power-of-two-choices a
seeded RNG, so a replay with the same seed replays the same decisions.

The snapshot is columnar (numpy arrays, one entry per replica) because the router must decide
in well under 50 us with 1,000 replicas: a Python loop over 1,000 objects alone costs more.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

import numpy as np

from .profiler import OnlineProfile

PRIORITY_VIOLATED = 0  # the node's slack is already used up
PRIORITY_AT_RISK = 1  # no replica's expected wait + service fits the slack
PRIORITY_ON_TIME = 2  # some replica meets the slack
N_PRIORITIES = 3


@dataclass(frozen=True)
class NodeRequest:
    """One LLM node asking for a replica."""

    deadline: float  # absolute, on the same clock as `now`
    prompt_tokens: int
    output_tokens: int  # expected
    to_first_token: bool  # the deadline is for the first token (TTFT), not the last


@dataclass(frozen=True)
class ReplicaView:
    """What the router may know about one replica (tests and small pools build these)."""

    id: str
    ready: bool = True
    running: int = 0
    max_in_flight: int = 8
    running_left_s: float = 0.0  # predicted seconds of work left in the running requests
    queued: tuple[int, int, int] = (0, 0, 0)  # queued requests per priority
    queued_s: tuple[float, float, float] = (0.0, 0.0, 0.0)  # their predicted service seconds


Schedule = Callable[[int, float], tuple[Sequence[float], Sequence[float]]]


def slot_start(running_ends: Sequence[float], max_in_flight: int, ahead_work: Sequence[float],
               now: float) -> float:
    """When a newcomer starts behind `ahead_work` (seconds each, in queue order) on a replica
    whose running requests end at `running_ends`: slots free one by one, each taken by the
    next in line. Unlike the fluid `expected_waits`, a slot that frees early is used early."""
    free = max_in_flight - len(running_ends)
    if len(ahead_work) < free:
        return now
    slots = [max(t, now) for t in running_ends] + [now] * max(0, free)
    heapq.heapify(slots)
    for work in ahead_work:
        heapq.heapreplace(slots, slots[0] + work)
    return slots[0]


def expected_waits(
    running: np.ndarray,
    max_in_flight: np.ndarray,
    running_left_s: np.ndarray,
    queued: np.ndarray,
    queued_s: np.ndarray,
) -> np.ndarray:
    """Expected wait (seconds) before a new request of each priority starts, shape (3, n);
    `queued` and `queued_s` are shaped (3, n) too, priority by replica.

    Work queued at the same or a more urgent priority runs first. While a slot is free the
    wait is zero; otherwise the work ahead drains through `max_in_flight` parallel slots (a
    fluid approximation of continuous batching), so the wait comes from the predicted work
    queued and running, not from the queue length alone.
    """
    ahead = running + np.cumsum(queued, axis=0)
    work = running_left_s + np.cumsum(queued_s, axis=0)
    return np.where(ahead < max_in_flight, 0.0, work / max_in_flight)


@dataclass(frozen=True, eq=False)
class PoolSnapshot:
    """The pool at one instant, one array entry per replica. The decode speed a newcomer would
    get is derived when the snapshot is built; expected waits on first use, per priority, so a
    decision pays only for the priorities it looks at."""

    ids: tuple[str, ...]
    ready: np.ndarray  # bool
    running: np.ndarray  # int
    max_in_flight: np.ndarray  # int
    running_left_s: np.ndarray  # float: predicted seconds left in the running requests
    queued: np.ndarray  # int (3, n): queued requests per priority
    queued_s: np.ndarray  # float (3, n): their predicted service seconds
    load: np.ndarray  # int: running + queued, what queue-length policies look at
    step_s: np.ndarray  # float: decode step time at the batch a newcomer would join
    tiebreak: np.ndarray  # float: a nanosecond per running request, to split equal waits
    # Replica i's slots in detail, for policies that look past the columns: (predicted ends
    # of its running requests, predicted work of the live requests queued with a deadline at
    # or before `deadline`, in queue order). None when the pool does not offer it.
    schedule: Schedule | None = None

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        ready: np.ndarray,
        running: np.ndarray,
        max_in_flight: np.ndarray,
        running_left_s: np.ndarray,
        queued: np.ndarray,
        queued_s: np.ndarray,
        profile: OnlineProfile,
        schedule: Schedule | None = None,
    ) -> PoolSnapshot:
        load = running + queued.sum(axis=0)
        return cls(
            ids=tuple(ids), ready=ready, running=running, max_in_flight=max_in_flight,
            running_left_s=running_left_s, queued=queued, queued_s=queued_s, load=load,
            step_s=profile.step_s_array(np.minimum(load + 1, max_in_flight)),
            tiebreak=running * 1e-9, schedule=schedule,
        )

    @classmethod
    def from_views(cls, views: Sequence[ReplicaView], profile: OnlineProfile) -> PoolSnapshot:
        return cls.build(
            ids=[v.id for v in views],
            ready=np.array([v.ready for v in views], dtype=bool),
            running=np.array([v.running for v in views], dtype=np.int64),
            max_in_flight=np.array([v.max_in_flight for v in views], dtype=np.int64),
            running_left_s=np.array([v.running_left_s for v in views], dtype=float),
            queued=np.array([v.queued for v in views], dtype=np.int64).reshape(-1, N_PRIORITIES).T,
            queued_s=np.array([v.queued_s for v in views], dtype=float).reshape(-1, N_PRIORITIES).T,
            profile=profile,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def wait(self, priority: int) -> np.ndarray:
        """Expected wait of a new request of `priority` on each replica; inf where not ready
        (the same as `expected_waits`, one priority at a time)."""
        cache: dict[int, np.ndarray] = self.__dict__.setdefault("_waits", {})
        if priority not in cache:
            if priority == N_PRIORITIES - 1:
                ahead = self.load
                work = self.running_left_s + self.queued_s.sum(axis=0)
            else:
                ahead = self.running + self.queued[: priority + 1].sum(axis=0)
                work = self.running_left_s + self.queued_s[: priority + 1].sum(axis=0)
            wait = np.where(ahead < self.max_in_flight, 0.0, work / self.max_in_flight)
            cache[priority] = np.where(self.ready, wait, np.inf)
        return cache[priority]

    @property
    def wait_s(self) -> np.ndarray:
        """All expected waits, shape (3, n)."""
        return np.stack([self.wait(p) for p in range(N_PRIORITIES)])


@dataclass(frozen=True)
class RouteDecision:
    replica_id: str | None  # None: no replica is ready
    index: int  # position in the snapshot, -1 with no replica
    priority: int
    expected_wait_s: float
    expected_service_s: float
    slack_s: float
    reason: str


Ordering = Literal["slack", "fifo"]


class Router(Protocol):
    name: str
    ordering: Ordering  # how the replica queues order this policy's requests

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision: ...


def _no_replica(slack: float) -> RouteDecision:
    return RouteDecision(None, -1, PRIORITY_VIOLATED if slack <= 0 else PRIORITY_AT_RISK,
                         float("inf"), float("inf"), slack, "no replica is ready")


@dataclass
class SlackAwareRouter:
    """Paper Algorithm 1: priority from remaining slack; the shortest wait that meets it."""

    profile: OnlineProfile
    name: str = "cato"
    ordering: Ordering = "slack"

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision:
        slack = req.deadline - now
        if not pool.ready.any():
            return _no_replica(slack)
        ttft = self.profile.ttft_s(req.prompt_tokens)
        decode_steps = 0 if req.to_first_token else max(0, req.output_tokens - 1)
        if slack <= 0:
            wait = pool.wait(PRIORITY_VIOLATED)
            i = int(np.argmin(wait + pool.tiebreak))
            return self._decision(pool, i, PRIORITY_VIOLATED, wait, ttft, decode_steps, slack,
                                  "already violated; {r} has the shortest wait")
        wait = pool.wait(PRIORITY_ON_TIME)
        finish = wait + (ttft + decode_steps * pool.step_s)  # inf where not ready
        meets = finish <= slack
        if meets.any():
            i = int(np.argmin(np.where(meets, wait + pool.tiebreak, np.inf)))
            return self._decision(pool, i, PRIORITY_ON_TIME, wait, ttft, decode_steps, slack,
                                  "{r} meets it")
        # Nobody meets it at the back of the line; as priority 1 it queues ahead of on-time work.
        wait = pool.wait(PRIORITY_AT_RISK)
        i = int(np.argmin(wait + pool.tiebreak))
        return self._decision(pool, i, PRIORITY_AT_RISK, wait, ttft, decode_steps, slack,
                              "no replica meets it; {r} has the shortest wait")

    @staticmethod
    def _decision(pool: PoolSnapshot, i: int, priority: int, wait: np.ndarray, ttft: float,
                  decode_steps: int, slack: float, why: str) -> RouteDecision:
        service = ttft + decode_steps * float(pool.step_s[i])
        rid = pool.ids[i]
        return RouteDecision(rid, i, priority, float(wait[i]), service, slack,
                             f"slack {slack:.3f}s {why.format(r=rid)}: wait {wait[i]:.3f}s "
                             f"+ service {service:.3f}s")


@dataclass
class SlotAwareRouter:
    """Ours, beyond the paper (issue #6 item 5): Algorithm 1's priorities, with two changes
    the simulator showed to pay off under overload (bench/results/report.md):
    - the wait on a replica is when a slot frees for the newcomer (`slot_start`: the running
      requests' predicted ends, then the live requests queued ahead of it by deadline), not
      the fluid average over all slots, which overestimates it when one slot frees early;
    - late work (priority 0) runs only when no live work waits (`late_work_last`), instead of
      one slot in every `live_per_violated + 1`: a node already late cannot be rescued, and
      each slot it takes can make another node late.
    Needs the pool's `schedule`. While some replica has a slot free it costs what Algorithm
    1 costs; otherwise a pass over each ready replica's slots and queue, which is for pools of
    tens of replicas, not thousands (`bench/results/router.md`)."""

    profile: OnlineProfile
    name: str = "cato_plus"
    ordering: Ordering = "slack"
    late_work_last: bool = True

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision:
        slack = req.deadline - now
        if not pool.ready.any():
            return _no_replica(slack)
        if pool.schedule is None:
            raise ValueError("cato_plus needs a pool snapshot with a schedule")
        ttft = self.profile.ttft_s(req.prompt_tokens)
        decode_steps = 0 if req.to_first_token else max(0, req.output_tokens - 1)
        if slack <= 0:
            wait = pool.wait(PRIORITY_VIOLATED)
            i = int(np.argmin(wait + pool.tiebreak))
            return SlackAwareRouter._decision(pool, i, PRIORITY_VIOLATED, wait, ttft,
                                              decode_steps, slack,
                                              "already violated; {r} has the shortest wait")
        service = ttft + decode_steps * pool.step_s
        # Fast path: a replica with a slot free even behind all its live queued work starts
        # the newcomer at once (no wait can be shorter), so no slots need walking.
        free = pool.ready & (pool.running + pool.queued[1:].sum(axis=0) < pool.max_in_flight)
        meets_now = free & (service <= slack)
        if meets_now.any():
            wait = np.where(pool.ready, np.where(free, 0.0, np.nan), np.inf)
            i = int(np.argmin(np.where(meets_now, pool.tiebreak, np.inf)))
            return SlackAwareRouter._decision(pool, i, PRIORITY_ON_TIME, wait, ttft,
                                              decode_steps, slack, "{r} has a free slot and "
                                              "meets it")
        wait = np.full(len(pool), np.inf)
        for i in np.flatnonzero(pool.ready):
            ends, ahead = pool.schedule(int(i), req.deadline)
            wait[i] = slot_start(ends, int(pool.max_in_flight[i]), ahead, now) - now
        finish = wait + service
        meets = finish <= slack
        if meets.any():
            i = int(np.argmin(np.where(meets, wait + pool.tiebreak, np.inf)))
            return SlackAwareRouter._decision(pool, i, PRIORITY_ON_TIME, wait, ttft,
                                              decode_steps, slack, "{r} meets it")
        i = int(np.argmin(wait + pool.tiebreak))
        return SlackAwareRouter._decision(pool, i, PRIORITY_AT_RISK, wait, ttft, decode_steps,
                                          slack, "no replica meets it; {r} frees a slot first")


def _plain(pool: PoolSnapshot, i: int, req: NodeRequest, now: float, reason: str) -> RouteDecision:
    """A decision of a slack-blind baseline: every request is just 'on time' to it."""
    return RouteDecision(pool.ids[i], i, PRIORITY_ON_TIME, float("nan"), float("nan"),
                         req.deadline - now, reason)


@dataclass
class RoundRobinRouter:
    name: str = "round_robin"
    ordering: Ordering = "fifo"
    _cursor: int = 0

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision:
        ready = np.flatnonzero(pool.ready)
        if len(ready) == 0:
            return _no_replica(req.deadline - now)
        # The next ready replica at or after the cursor, so pools that grow keep rotating.
        k = int(np.searchsorted(ready, self._cursor % len(pool)))
        i = int(ready[k % len(ready)])
        self._cursor = i + 1
        return _plain(pool, i, req, now, f"round robin: {pool.ids[i]}")


@dataclass
class PowerOfTwoRouter:
    """Ray Serve's default: sample two ready replicas, take the one with fewer requests."""

    seed: int = 0
    name: str = "p2c"
    ordering: Ordering = "fifo"
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision:
        ready = np.flatnonzero(pool.ready)
        if len(ready) == 0:
            return _no_replica(req.deadline - now)
        if len(ready) == 1:
            i = int(ready[0])
            return _plain(pool, i, req, now, f"p2c: {pool.ids[i]} is the only ready replica")
        a, b = (int(ready[k]) for k in self._rng.sample(range(len(ready)), 2))
        load = pool.load
        i = a if load[a] <= load[b] else b
        return _plain(pool, i, req, now, f"p2c: {pool.ids[a]} ({load[a]}) vs {pool.ids[b]} "
                      f"({load[b]}) -> {pool.ids[i]}")


@dataclass
class LeastLoadedRouter:
    name: str = "least_loaded"
    ordering: Ordering = "fifo"

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision:
        if not pool.ready.any():
            return _no_replica(req.deadline - now)
        load = np.where(pool.ready, pool.load, np.iinfo(np.int64).max)
        i = int(np.argmin(load))
        return _plain(pool, i, req, now, f"least loaded: {pool.ids[i]} with {load[i]} requests")


@dataclass
class SloTierRouter:
    """In the style of llm-d's predicted-latency scheduler: predict each replica's latency for
    this request (FIFO wait + service, from the same profile), keep the replicas predicted to
    meet the request's SLO and take the one with the LEAST headroom (packing, so that roomy
    replicas stay free for tighter requests); when none meets it, choose at random weighted
    towards low predicted latency. Replicas serve FIFO, as vLLM does; nothing is reordered."""

    profile: OnlineProfile
    seed: int = 0
    name: str = "slo_tier"
    ordering: Ordering = "fifo"
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision:
        slack = req.deadline - now
        if not pool.ready.any():
            return _no_replica(slack)
        wait = pool.wait(PRIORITY_ON_TIME)  # FIFO: behind everything queued
        steps = 0 if req.to_first_token else max(0, req.output_tokens - 1)
        predicted = wait + (self.profile.ttft_s(req.prompt_tokens) + steps * pool.step_s)
        headroom = slack - predicted  # -inf where not ready
        fits = headroom >= 0
        if fits.any():
            i = int(np.argmin(np.where(fits, headroom + pool.tiebreak, np.inf)))
            why = f"least headroom {headroom[i]:.3f}s among {int(fits.sum())} that meet the SLO"
        else:
            ready = np.flatnonzero(pool.ready)
            weights = 1.0 / np.maximum(predicted[ready], 1e-6)
            i = int(self._rng.choice(ready, p=weights / weights.sum()))
            why = f"none meets the SLO; weighted towards low latency ({predicted[i]:.3f}s)"
        return RouteDecision(pool.ids[i], i, PRIORITY_ON_TIME, float(wait[i]),
                             float(predicted[i] - wait[i]), slack, f"slo tier: {pool.ids[i]}, {why}")


ROUTERS = ("cato", "cato_plus", "round_robin", "p2c", "least_loaded", "slo_tier")


def make_router(name: str, profile: OnlineProfile, seed: int = 0) -> Router:
    if name == "cato":
        return SlackAwareRouter(profile)
    if name == "cato_plus":
        return SlotAwareRouter(profile)
    if name == "round_robin":
        return RoundRobinRouter()
    if name == "p2c":
        return PowerOfTwoRouter(seed=seed)
    if name == "least_loaded":
        return LeastLoadedRouter()
    if name == "slo_tier":
        return SloTierRouter(profile, seed=seed)
    raise ValueError(f"unknown router policy {name!r}; choose one of {', '.join(ROUTERS)}")
