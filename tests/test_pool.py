"""The pool's bookkeeping: slots, queues, the router's columns, replica life cycle."""

from __future__ import annotations

import numpy as np
import pytest

from cato_backend.pool import Job, Pool, ReplicaState
from cato_backend.profiler import OnlineProfile
from cato_backend.router import NodeRequest, ReplicaView, PoolSnapshot, SlackAwareRouter

from .conftest import FAST_PROFILE


def make_pool(n: int, max_in_flight: int = 2, ready: bool = True) -> Pool:
    profile = OnlineProfile(FAST_PROFILE)
    pool = Pool("m", profile, SlackAwareRouter(profile))
    for i in range(n):
        r = pool.add_replica(f"r{i}", f"http://r{i}", max_in_flight, now=0.0)
        if ready:
            pool.mark_ready(r, client=object(), now=0.0)
    return pool


def job(deadline: float = 100.0, out: int = 50) -> Job:
    return Job(NodeRequest(deadline, prompt_tokens=100, output_tokens=out, to_first_token=False))


async def test_a_replica_never_runs_more_than_max_in_flight():
    pool = make_pool(1, max_in_flight=2)
    jobs = [job() for _ in range(5)]
    for j in jobs:
        pool.submit(j, now=1.0)
    r = pool.replicas[0]
    assert len(r.running) == 2 and len(r.queue) == 3
    assert [j.granted.done() for j in jobs] == [True, True, False, False, False]


async def test_finishing_a_job_starts_the_most_urgent_queued_one():
    pool = make_pool(1, max_in_flight=1)
    first, relaxed, urgent = job(), job(deadline=100.0), job(deadline=1.2)
    for j in (first, relaxed, urgent):
        pool.submit(j, now=1.0)
    pool.finish(first, now=1.1)
    assert urgent.granted.done() and not relaxed.granted.done()


async def test_snapshot_columns_follow_every_event():
    pool = make_pool(2, max_in_flight=1)
    jobs = [job() for _ in range(4)]
    for j in jobs:
        pool.submit(j, now=1.0)
    pool.cancel(jobs[3], now=1.0)
    pool.finish(jobs[0], now=1.5)

    def from_scratch(now: float) -> PoolSnapshot:  # what the columns must equal
        views = [ReplicaView(r.id, r.routable, len(r.running), r.max_in_flight,
                             max(r.running_end_sum - len(r.running) * now, 0.0),
                             tuple(r.queue.count), tuple(r.queue.work_s)) for r in pool.replicas]
        return PoolSnapshot.from_views(views, pool.profile)

    got, want = pool.snapshot(2.0), from_scratch(2.0)
    for field in ("ready", "running", "load", "running_left_s", "queued", "queued_s", "step_s"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), err_msg=field)
    np.testing.assert_allclose(got.wait_s, want.wait_s)


async def test_cancelled_queued_job_leaves_queue_and_counts():
    pool = make_pool(1, max_in_flight=1)
    running, queued = job(), job()
    pool.submit(running, 1.0)
    pool.submit(queued, 1.0)
    pool.cancel(queued, 1.0)
    assert len(pool.replicas[0].queue) == 0
    assert pool.snapshot(1.0).load.tolist() == [1]
    assert queued.granted.cancelled()


async def test_jobs_wait_for_a_replica_and_start_when_one_is_ready():
    pool = make_pool(1, ready=False)
    j = job()
    decision = pool.submit(j, now=1.0)
    assert decision.replica_id is None and pool.pending == [j]
    pool.mark_ready(pool.replicas[0], client=object(), now=2.0)
    assert j.granted.done() and pool.pending == []


async def test_stopped_replica_hands_its_queue_to_the_others():
    pool = make_pool(2, max_in_flight=1)
    a, b, c = job(), job(), job()
    for j in (a, b, c):
        pool.submit(j, now=1.0)
    victim = next(r for r in pool.replicas if len(r.queue))
    pool.mark_stopped(victim, now=1.2, detail="killed")
    assert victim.state is ReplicaState.STOPPED and len(victim.queue) == 0
    survivor = next(r for r in pool.replicas if r is not victim)
    assert len(survivor.queue) + len(survivor.running) >= 2
    assert pool.snapshot(1.2).ready.tolist() == [r is survivor for r in pool.replicas]


async def test_excluded_replica_is_not_chosen():
    pool = make_pool(2)
    j = Job(job().node, excluded=frozenset({"r0"}))
    assert pool.submit(j, now=1.0).replica_id == "r1"


async def test_unhealthy_replica_takes_no_new_work_until_healthy_again():
    pool = make_pool(2)
    pool.set_health(pool.replicas[0], False, now=1.0)
    assert {pool.submit(job(), 1.0).replica_id for _ in range(3)} == {"r1"}
    pool.set_health(pool.replicas[0], True, now=2.0)
    assert pool.snapshot(2.0).ready.tolist() == [True, True]


async def test_duplicate_replica_id_is_refused():
    pool = make_pool(1)
    with pytest.raises(ValueError):
        pool.add_replica("r0", "http://x", 1, now=0.0)


async def test_a_replica_becoming_ready_takes_queued_work_from_the_busy_one():
    pool = make_pool(2, max_in_flight=1, ready=False)
    pool.mark_ready(pool.replicas[0], client=object(), now=0.0)
    jobs = [job(deadline=10.0 + i) for i in range(3)]
    for j in jobs:
        pool.submit(j, now=1.0)
    assert len(pool.replicas[0].queue) == 2
    pool.mark_ready(pool.replicas[1], client=object(), now=2.0)
    assert jobs[1].granted.done() and jobs[1].replica is pool.replicas[1]  # most urgent moved
    assert len(pool.replicas[0].queue) + len(pool.replicas[1].queue) == 1


async def test_utilization_is_busy_time_over_provisioned_time():
    pool = make_pool(1, max_in_flight=2)  # replica started at t=0
    a, b = job(), job()
    pool.submit(a, now=2.0)
    pool.submit(b, now=3.0)
    pool.finish(a, now=4.0)
    pool.finish(b, now=6.0)  # busy from 2 to 6, overlapping requests counted once
    assert pool.replicas[0].utilization(now=10.0) == (4.0, 10.0)
    pool.mark_stopped(pool.replicas[0], now=12.0)
    assert pool.utilization(now=20.0) == (4.0, 12.0)  # a stopped replica costs no more


async def test_jobs_waiting_past_their_deadline_are_reported_violated_once():
    pool = make_pool(1, max_in_flight=1)
    running, late, later = job(deadline=2.0), job(deadline=2.0), job(deadline=50.0)
    for i, j in enumerate((running, late, later)):
        j.node_id = f"t{i}/fim"
        pool.submit(j, now=1.0)
    assert pool.report_overdue(now=1.5) == 0
    # At 3.0 the queued job's deadline has passed; the running one may still finish in
    # time for its own metric, so only its end tells.
    assert pool.report_overdue(now=3.0) == 1
    assert pool.report_overdue(now=4.0) == 0  # once per node
    assert [(t, node, o) for t, node, o in pool.outcomes] == [(3.0, "t1/fim", "violated")]
    assert late.violation_reported and not later.violation_reported
