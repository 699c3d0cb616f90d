"""The backend-owned priority queue of one replica: order, anti-starvation, cancellation and
the per-class accounting the router reads."""

from __future__ import annotations

import pytest

from cato_backend.queues import LATE_WORK_LAST, ReplicaQueue

VIOLATED, AT_RISK, ON_TIME = 0, 1, 2
NOW = 10.0


class Job:
    """Queue items are compared by identity, like the pool's jobs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def drain(q: ReplicaQueue, now: float = NOW) -> list[str]:
    out = []
    while (item := q.pop(now)) is not None:
        out.append(item.name)
    return out


def test_queue_orders_by_priority_then_deadline_then_arrival():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    q.push(Job("on_time_early"), ON_TIME, deadline=20.0, work_s=1.0)
    q.push(Job("at_risk_late"), AT_RISK, deadline=90.0, work_s=1.0)
    q.push(Job("on_time_first_of_two"), ON_TIME, deadline=30.0, work_s=1.0)
    q.push(Job("at_risk_early"), AT_RISK, deadline=40.0, work_s=1.0)
    q.push(Job("on_time_second_of_two"), ON_TIME, deadline=30.0, work_s=1.0)
    assert drain(q) == ["at_risk_early", "at_risk_late", "on_time_early",
                        "on_time_first_of_two", "on_time_second_of_two"]


def test_violated_work_orders_by_deadline_then_arrival():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    q.push(Job("late"), VIOLATED, deadline=9.0, work_s=1.0)
    q.push(Job("older_a"), VIOLATED, deadline=5.0, work_s=1.0)
    q.push(Job("older_b"), VIOLATED, deadline=5.0, work_s=1.0)
    assert drain(q) == ["older_a", "older_b", "late"]


def test_fifo_queue_orders_by_arrival_only():
    q: ReplicaQueue[Job] = ReplicaQueue("fifo")
    q.push(Job("1"), ON_TIME, deadline=50.0, work_s=1.0)
    q.push(Job("2"), VIOLATED, deadline=1.0, work_s=1.0)
    q.push(Job("3"), AT_RISK, deadline=20.0, work_s=1.0)
    q.push(Job("4"), VIOLATED, deadline=2.0, work_s=1.0)
    q.push(Job("5"), ON_TIME, deadline=5.0, work_s=1.0)  # expired by NOW, not demoted
    assert drain(q) == ["1", "2", "3", "4", "5"]


def test_fifo_queue_does_not_demote_expired_work():
    q: ReplicaQueue[Job] = ReplicaQueue("fifo")
    q.push(Job("a"), ON_TIME, deadline=1.0, work_s=2.0)
    q.push(Job("b"), ON_TIME, deadline=1.0, work_s=2.0)
    q.pop(NOW)
    assert q.count == [0, 0, 1]


@pytest.mark.parametrize("live_per_violated", [1, 3])
def test_violated_work_gets_one_dispatch_per_live_per_violated_live_dispatches(live_per_violated):
    q: ReplicaQueue[Job] = ReplicaQueue("slack", live_per_violated=live_per_violated)
    for i in range(12):
        q.push(Job("L"), ON_TIME, deadline=100.0 + i, work_s=1.0)
    for i in range(3):
        q.push(Job("V"), VIOLATED, deadline=1.0 + i, work_s=1.0)
    order = "".join(drain(q))
    block = "L" * live_per_violated + "V"
    assert order.startswith(block * 3)  # while live work waits: one V per block
    assert order.count("V") == 3 and order.count("L") == 12


def test_violated_work_gets_every_slot_when_no_live_work_waits():
    q: ReplicaQueue[Job] = ReplicaQueue("slack", live_per_violated=3)
    for i in range(4):
        q.push(Job(f"v{i}"), VIOLATED, deadline=float(i), work_s=1.0)
    assert drain(q) == ["v0", "v1", "v2", "v3"]


def test_violated_work_is_never_dropped_under_steady_live_load():
    q: ReplicaQueue[Job] = ReplicaQueue("slack", live_per_violated=3)
    q.push(Job("late"), VIOLATED, deadline=1.0, work_s=1.0)
    served = []
    for i in range(8):  # live work keeps arriving, one per dispatch
        q.push(Job(f"l{i}"), ON_TIME, deadline=100.0 + i, work_s=1.0)
        served.append(q.pop(NOW).name)
    assert served.index("late") == 3


def test_live_work_whose_deadline_passed_is_demoted_when_it_reaches_the_head():
    q: ReplicaQueue[Job] = ReplicaQueue("slack", live_per_violated=3)
    q.push(Job("expired"), ON_TIME, deadline=5.0, work_s=2.0)
    q.push(Job("fresh"), ON_TIME, deadline=50.0, work_s=1.0)
    assert q.pop(NOW).name == "fresh"  # the expired one now waits as violated work
    assert q.count == [1, 0, 0]
    assert q.work_s == [2.0, 0.0, 0.0]
    assert q.pop(NOW).name == "expired"


def test_live_work_is_demoted_exactly_at_its_deadline():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    q.push(Job("a"), AT_RISK, deadline=NOW, work_s=1.0)
    q.push(Job("b"), ON_TIME, deadline=NOW + 1.0, work_s=1.0)
    assert q.pop(NOW).name == "b"


def test_demoted_work_keeps_its_deadline_order_among_violated_work():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    q.push(Job("violated_at_8"), VIOLATED, deadline=8.0, work_s=1.0)
    q.push(Job("expired_at_6"), ON_TIME, deadline=6.0, work_s=1.0)
    assert drain(q) == ["expired_at_6", "violated_at_8"]


def test_remove_drops_a_cancelled_item():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    a, b, c = Job("a"), Job("b"), Job("c")
    for j, d in ((a, 20.0), (b, 30.0), (c, 40.0)):
        q.push(j, ON_TIME, deadline=d, work_s=1.0)
    assert q.remove(a) is True
    assert q.remove(a) is False  # already gone
    assert len(q) == 2 and set(q.items()) == {b, c}
    assert drain(q) == ["b", "c"]
    assert q.remove(Job("never queued")) is False


def test_removed_violated_item_is_not_served():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    v = Job("v")
    q.push(v, VIOLATED, deadline=1.0, work_s=1.0)
    q.push(Job("live"), ON_TIME, deadline=50.0, work_s=1.0)
    q.remove(v)
    assert drain(q) == ["live"]


def test_an_item_removed_and_pushed_again_is_served_once():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    a = Job("a")
    q.push(a, ON_TIME, deadline=20.0, work_s=1.0)
    q.remove(a)
    q.push(a, AT_RISK, deadline=20.0, work_s=1.0)
    assert q.count == [0, 1, 0]
    assert drain(q) == ["a"]


def test_pushing_a_queued_item_twice_is_rejected():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    a = Job("a")
    q.push(a, ON_TIME, deadline=20.0, work_s=1.0)
    with pytest.raises(ValueError, match="already queued"):
        q.push(a, AT_RISK, deadline=20.0, work_s=1.0)
    assert len(q) == 1 and q.count == [0, 0, 1]


def test_count_and_work_s_track_each_class():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    jobs = {n: Job(n) for n in "vabc"}
    q.push(jobs["v"], VIOLATED, deadline=1.0, work_s=0.5)
    q.push(jobs["a"], AT_RISK, deadline=20.0, work_s=1.5)
    q.push(jobs["b"], ON_TIME, deadline=30.0, work_s=2.0)
    q.push(jobs["c"], ON_TIME, deadline=40.0, work_s=3.0)
    assert q.count == [1, 1, 2]
    assert q.work_s == pytest.approx([0.5, 1.5, 5.0])
    q.remove(jobs["c"])
    assert q.count == [1, 1, 1] and q.work_s == pytest.approx([0.5, 1.5, 2.0])
    assert q.pop(NOW) is jobs["a"]
    assert q.count == [1, 0, 1] and q.work_s == pytest.approx([0.5, 0.0, 2.0])
    drain(q)
    assert q.count == [0, 0, 0] and q.work_s == [0.0, 0.0, 0.0]
    assert len(q) == 0


def test_work_s_of_an_emptied_class_is_exactly_zero():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    jobs = [Job(str(i)) for i in range(3)]
    for j, w in zip(jobs, (0.1, 0.2, 0.3)):
        q.push(j, ON_TIME, deadline=50.0, work_s=w)
    for j in jobs:
        q.remove(j)
    assert q.work_s[ON_TIME] == 0.0  # 0.1 + 0.2 + 0.3 - 0.1 - 0.2 - 0.3 is not 0.0 in floats


def test_pop_of_an_empty_queue_returns_none():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    assert q.pop(NOW) is None
    a = Job("a")
    q.push(a, ON_TIME, deadline=50.0, work_s=1.0)
    q.remove(a)
    assert q.pop(NOW) is None


def test_live_per_violated_must_be_at_least_one():
    with pytest.raises(ValueError):
        ReplicaQueue("slack", live_per_violated=0)


def test_late_work_last_never_runs_late_work_while_live_work_waits():
    q: ReplicaQueue[Job] = ReplicaQueue("slack", live_per_violated=LATE_WORK_LAST)
    for i in range(3):
        q.push(Job(f"V{i}"), VIOLATED, deadline=1.0 + i, work_s=1.0)
    for i in range(10):
        q.push(Job(f"L{i}"), ON_TIME, deadline=50.0 + i, work_s=1.0)
    assert drain(q) == [f"L{i}" for i in range(10)] + ["V0", "V1", "V2"]


def test_live_work_ahead_is_what_a_new_on_time_entry_queues_behind():
    q: ReplicaQueue[Job] = ReplicaQueue("slack")
    q.push(Job("late"), VIOLATED, deadline=1.0, work_s=9.0)  # runs last for cato_plus
    q.push(Job("risk"), AT_RISK, deadline=99.0, work_s=2.0)  # at risk: ahead of any on-time
    q.push(Job("early"), ON_TIME, deadline=20.0, work_s=3.0)
    q.push(Job("later"), ON_TIME, deadline=40.0, work_s=4.0)
    assert q.live_work_ahead(30.0) == [2.0, 3.0]
    assert q.live_work_ahead(10.0) == [2.0]
    fifo: ReplicaQueue[Job] = ReplicaQueue("fifo")
    fifo.push(Job("b"), ON_TIME, deadline=40.0, work_s=4.0)
    fifo.push(Job("a"), ON_TIME, deadline=20.0, work_s=3.0)
    assert fifo.live_work_ahead(10.0) == [4.0, 3.0]  # FIFO: everything, in arrival order
