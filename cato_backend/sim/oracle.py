"""The offline oracle: earliest deadline first with known service times (issue #6 item 4).

Only a simulator can run it: it is told each request's true output length (the server only
has the profiler's expectation), so the service times it plans with are the profile's for the
real lengths. With those it:
- routes a node to the replica where it starts first among those where it will meet its
  deadline (`slot_start`: the running nodes' known ends, then the nodes queued ahead of it),
  queued by deadline (EDF);
- sends a node that can meet its deadline nowhere to the back: it runs only when no node
  that can still make it is waiting (`late_work_last`), instead of taking a slot from one.

It estimates the best a router can do with this pool; it is not a proven bound: a node is
bound to one replica when it is routed, nothing is preempted, and the decode slowdown of the
batches to come is the profile's guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..profiler import OnlineProfile
from ..router import (
    PRIORITY_ON_TIME,
    PRIORITY_VIOLATED,
    NodeRequest,
    Ordering,
    PoolSnapshot,
    RouteDecision,
    _no_replica,
    slot_start,
)

ORACLE = "oracle"


@dataclass
class OracleRouter:
    """EDF with known service times: the simulator puts the true output length in
    `req.output_tokens`, and the pool's running requests' predicted ends are then known."""

    profile: OnlineProfile
    name: str = ORACLE
    ordering: Ordering = "slack"
    late_work_last: bool = True

    def decide(self, req: NodeRequest, pool: PoolSnapshot, now: float) -> RouteDecision:
        slack = req.deadline - now
        if not pool.ready.any():
            return _no_replica(slack)
        assert pool.schedule is not None, "the oracle needs the pool's schedule"
        ttft = self.profile.ttft_s(req.prompt_tokens)
        steps = 0 if req.to_first_token else max(0, req.output_tokens - 1)
        wait = np.full(len(pool), np.inf)
        for i in np.flatnonzero(pool.ready):
            ends, ahead = pool.schedule(int(i), req.deadline)
            wait[i] = slot_start(ends, int(pool.max_in_flight[i]), ahead, now) - now
        service = ttft + steps * pool.step_s
        meets = wait + service <= slack
        if slack > 0 and meets.any():
            i = int(np.argmin(np.where(meets, wait + pool.tiebreak, np.inf)))
            priority, why = PRIORITY_ON_TIME, "meets it"
        else:
            wait = pool.wait(PRIORITY_VIOLATED)
            i = int(np.argmin(wait + pool.tiebreak))
            priority, why = PRIORITY_VIOLATED, "meets it nowhere: last in line"
        return RouteDecision(pool.ids[i], i, priority, float(wait[i]), float(service[i]), slack,
                             f"oracle: slack {slack:.3f}s, {pool.ids[i]} {why}")
