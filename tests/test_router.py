"""The replica router (paper Algorithm 1) and the slack-blind baselines it is compared with.

Times are explicit (`now=10.0`); the profile is made up so the arithmetic is easy to follow:
TTFT = 0.1 s + 1 ms per prompt token (0.2 s for the 100-token prompts below), and a decode step
takes 10 ms at batch 1 rising linearly to 80 ms at batch 8.
"""

from __future__ import annotations

import numpy as np
import pytest

from cato_backend.profiler import OnlineProfile
from cato_backend.profiles import DecodePoint, EngineProfile
from cato_backend.router import (
    PRIORITY_AT_RISK,
    PRIORITY_ON_TIME,
    PRIORITY_VIOLATED,
    LeastLoadedRouter,
    NodeRequest,
    PoolSnapshot,
    PowerOfTwoRouter,
    ReplicaView,
    RoundRobinRouter,
    SlackAwareRouter,
    SloTierRouter,
    expected_waits,
    make_router,
    slot_start,
)

PROFILE = EngineProfile(
    model="m", hardware="test", engine="test", measured_at="2026-01-01", command="hand-made",
    max_model_len=4096, overhead_ms=100.0, prefill_ms_per_token=1.0,
    decode=[DecodePoint(batch=1, step_ms=10.0), DecodePoint(batch=8, step_ms=80.0)],
)
NOW = 10.0
TTFT = 0.2  # of a 100-token prompt


def online() -> OnlineProfile:
    return OnlineProfile(PROFILE)


def snap(*views: ReplicaView, profile: OnlineProfile | None = None) -> PoolSnapshot:
    return PoolSnapshot.from_views(views, profile or online())


def req(slack: float, output_tokens: int = 1, to_first_token: bool = False) -> NodeRequest:
    return NodeRequest(deadline=NOW + slack, prompt_tokens=100, output_tokens=output_tokens,
                       to_first_token=to_first_token)


def busy(id: str, left_s: float, **kw) -> ReplicaView:
    """A replica with one slot, taken by a request with `left_s` seconds to go."""
    return ReplicaView(id, running=1, max_in_flight=1, running_left_s=left_s, **kw)


def cato() -> SlackAwareRouter:
    return SlackAwareRouter(online())


# -- expected waits ------------------------------------------------------------------------

def test_expected_wait_is_zero_while_a_slot_is_free():
    pool = snap(ReplicaView("a", running=7, max_in_flight=8, running_left_s=30.0))
    assert pool.wait_s[:, 0].tolist() == [0.0, 0.0, 0.0]


def test_expected_wait_counts_queued_work_not_queue_length():
    few_long = busy("few_long", 1.0, queued=(0, 0, 1), queued_s=(0.0, 0.0, 6.0))
    many_short = busy("many_short", 1.0, queued=(0, 0, 4), queued_s=(0.0, 0.0, 2.0))
    pool = snap(few_long, many_short)
    assert pool.wait_s[PRIORITY_ON_TIME].tolist() == pytest.approx([7.0, 3.0])
    d = cato().decide(req(slack=60.0), pool, NOW)
    assert d.replica_id == "many_short"
    assert d.expected_wait_s == pytest.approx(3.0)


def test_expected_wait_with_equal_queue_lengths_follows_queued_work():
    light = busy("light", 1.0, queued=(0, 0, 2), queued_s=(0.0, 0.0, 1.0))
    heavy = busy("heavy", 1.0, queued=(0, 0, 2), queued_s=(0.0, 0.0, 6.0))
    pool = snap(heavy, light)
    assert pool.wait_s[PRIORITY_ON_TIME].tolist() == pytest.approx([7.0, 2.0])
    assert cato().decide(req(slack=60.0), pool, NOW).replica_id == "light"


def test_expected_wait_drains_work_through_all_slots():
    # 4 slots all taken, 6 s of running work and 2 s queued: 8 s of work over 4 slots.
    v = ReplicaView("a", running=4, max_in_flight=4, running_left_s=6.0,
                    queued=(0, 0, 1), queued_s=(0.0, 0.0, 2.0))
    assert snap(v).wait_s[PRIORITY_ON_TIME, 0] == pytest.approx(2.0)


def test_wait_for_priority_1_ignores_queued_priority_2_work():
    v = busy("a", 1.0, queued=(1, 2, 5), queued_s=(0.5, 1.5, 10.0))
    waits = snap(v).wait_s[:, 0]
    assert waits[PRIORITY_VIOLATED] == pytest.approx(1.5)  # running + violated
    assert waits[PRIORITY_AT_RISK] == pytest.approx(3.0)  # + at-risk, not on-time
    assert waits[PRIORITY_ON_TIME] == pytest.approx(13.0)  # + everything


def test_expected_waits_function_is_shaped_priority_by_replica():
    w = expected_waits(
        running=np.array([1, 0]), max_in_flight=np.array([1, 1]),
        running_left_s=np.array([2.0, 0.0]),
        queued=np.array([[0, 0, 1], [0, 0, 0]]).T, queued_s=np.array([[0.0, 0.0, 3.0], [0, 0, 0]]).T,
    )
    assert w.shape == (3, 2)
    assert w[:, 0].tolist() == pytest.approx([2.0, 2.0, 5.0])
    assert w[:, 1].tolist() == [0.0, 0.0, 0.0]


def test_snapshot_marks_replicas_not_ready_with_infinite_wait():
    pool = snap(ReplicaView("a", ready=False), ReplicaView("b"))
    assert np.isinf(pool.wait_s[:, 0]).all()
    assert (pool.wait_s[:, 1] == 0.0).all()


def test_snapshot_step_time_is_the_batch_a_newcomer_would_join():
    pool = snap(ReplicaView("idle"), ReplicaView("three", running=2, queued=(0, 0, 1)),
                ReplicaView("full", running=8, queued=(0, 0, 5)))
    # batches 1, 4 and 8 (capped at max_in_flight): 10, 40 and 80 ms
    assert pool.step_s.tolist() == pytest.approx([0.010, 0.040, 0.080])
    assert pool.load.tolist() == [0, 3, 13]


# -- the slack-aware router ----------------------------------------------------------------

def test_router_gives_priority_0_to_violated_slack():
    d = cato().decide(req(slack=-1.0), snap(ReplicaView("a")), NOW)
    assert d.priority == PRIORITY_VIOLATED
    assert d.slack_s == pytest.approx(-1.0)
    assert d.replica_id == "a"
    assert "violated" in d.reason


def test_router_treats_exactly_zero_slack_as_violated():
    assert cato().decide(req(slack=0.0), snap(ReplicaView("a")), NOW).priority == PRIORITY_VIOLATED


def test_violated_request_goes_to_the_shortest_priority_0_wait():
    # a's on-time queue is long, but violated work only waits behind violated work.
    a = busy("a", 1.0, queued=(0, 0, 9), queued_s=(0.0, 0.0, 50.0))
    b = busy("b", 3.0)
    d = cato().decide(req(slack=-0.5), snap(b, a), NOW)
    assert (d.replica_id, d.priority, d.expected_wait_s) == ("a", PRIORITY_VIOLATED, 1.0)


def test_router_gives_priority_2_when_some_replica_meets_slack():
    d = cato().decide(req(slack=1.0), snap(ReplicaView("a")), NOW)
    assert d.priority == PRIORITY_ON_TIME
    assert d.expected_wait_s == 0.0
    assert d.expected_service_s == pytest.approx(TTFT)
    assert "meets" in d.reason


def test_router_picks_shortest_wait_that_meets_slack_not_shortest_wait_overall():
    # crowded: a free slot (no wait) but it joins a batch of 8, so 20 decode steps take 1.6 s;
    # single: 0.5 s wait, then decodes alone at 10 ms a step.
    crowded = ReplicaView("crowded", running=7, max_in_flight=8, running_left_s=20.0)
    single = busy("single", 0.5)
    pool = snap(crowded, single)
    d = cato().decide(req(slack=1.0, output_tokens=21), pool, NOW)
    assert pool.wait_s[PRIORITY_ON_TIME].tolist() == [0.0, 0.5]
    assert d.replica_id == "single"
    assert d.priority == PRIORITY_ON_TIME
    assert d.expected_wait_s + d.expected_service_s == pytest.approx(0.5 + TTFT + 20 * 0.010)


def test_router_prefers_the_shortest_wait_among_replicas_that_meet_slack():
    pool = snap(busy("slow", 0.6), busy("fast", 0.3), busy("late", 5.0))
    d = cato().decide(req(slack=2.0), pool, NOW)
    assert (d.replica_id, d.priority) == ("fast", PRIORITY_ON_TIME)


def test_router_falls_back_to_shortest_wait_with_priority_1():
    # Nobody can deliver in 0.1 s (TTFT alone is 0.2 s). At priority 1 the request queues
    # ahead of on-time work, so a's 10 s of queued on-time work does not count, b's 2 s does.
    a = busy("a", 1.0, queued=(0, 0, 5), queued_s=(0.0, 0.0, 10.0))
    b = busy("b", 2.0)
    d = cato().decide(req(slack=0.1), snap(b, a), NOW)
    assert d.priority == PRIORITY_AT_RISK
    assert d.replica_id == "a"
    assert d.expected_wait_s == pytest.approx(1.0)
    assert "no replica meets it" in d.reason


def test_router_deadline_for_first_token_counts_only_ttft():
    long_answer = dict(slack=0.5, output_tokens=500)
    r = cato()
    ttft = r.decide(req(**long_answer, to_first_token=True), snap(ReplicaView("a")), NOW)
    e2e = r.decide(req(**long_answer, to_first_token=False), snap(ReplicaView("a")), NOW)
    assert (ttft.priority, ttft.expected_service_s) == (PRIORITY_ON_TIME, pytest.approx(TTFT))
    assert e2e.priority == PRIORITY_AT_RISK
    assert e2e.expected_service_s == pytest.approx(TTFT + 499 * 0.010)


def test_router_follows_the_online_profile_correction():
    profile = online()
    router = SlackAwareRouter(profile)
    pool = snap(ReplicaView("a"), profile=profile)
    assert router.decide(req(slack=0.5), pool, NOW).priority == PRIORITY_ON_TIME
    profile.ttft_factor = 3.0  # the engine turned out 3x slower to the first token
    d = router.decide(req(slack=0.5), pool, NOW)
    assert d.priority == PRIORITY_AT_RISK
    assert d.expected_service_s == pytest.approx(3 * TTFT)


def test_router_tie_breaks_on_fewer_running_then_index():
    pool = snap(ReplicaView("a", running=3), ReplicaView("b", running=1),
                ReplicaView("c", running=1), ReplicaView("d", running=2))
    d = cato().decide(req(slack=5.0), pool, NOW)
    assert (d.replica_id, d.index) == ("b", 1)
    same = snap(ReplicaView("a"), ReplicaView("b"), ReplicaView("c"))
    assert cato().decide(req(slack=5.0), same, NOW).index == 0


def test_router_tie_break_applies_to_violated_and_at_risk_requests_too():
    pool = snap(ReplicaView("a", running=2), ReplicaView("b", running=1))
    assert cato().decide(req(slack=-1.0), pool, NOW).replica_id == "b"
    assert cato().decide(req(slack=0.1), pool, NOW).replica_id == "b"


@pytest.mark.parametrize("slack", [-1.0, 0.1, 5.0])  # violated, at risk, on time
def test_router_skips_replicas_not_ready(slack):
    pool = snap(ReplicaView("starting", ready=False),
                busy("ready", 1.0, queued=(1, 1, 1), queued_s=(1.0, 1.0, 1.0)),
                ReplicaView("draining", ready=False))
    d = cato().decide(req(slack=slack), pool, NOW)
    assert (d.replica_id, d.index) == ("ready", 1)


@pytest.mark.parametrize("views", [(), (ReplicaView("a", ready=False),)])
def test_router_returns_no_replica_when_none_ready(views):
    pool = snap(*views)
    for slack, priority in ((2.0, PRIORITY_AT_RISK), (-2.0, PRIORITY_VIOLATED)):
        d = cato().decide(req(slack=slack), pool, NOW)
        assert (d.replica_id, d.index, d.priority) == (None, -1, priority)
        assert d.expected_wait_s == float("inf")
        assert d.reason == "no replica is ready"


def test_router_does_not_change_the_snapshot():
    pool = snap(busy("a", 1.0, queued=(1, 1, 1), queued_s=(1.0, 1.0, 1.0)), ReplicaView("b"))
    before = {k: getattr(pool, k).copy() for k in ("ready", "running", "load", "wait_s", "step_s")}
    for slack in (-1.0, 0.1, 5.0):
        cato().decide(req(slack=slack, output_tokens=50), pool, NOW)
    for k, v in before.items():
        assert np.array_equal(getattr(pool, k), v), k


def test_router_decision_depends_only_on_deadline_minus_now():
    pool = snap(busy("a", 0.4), busy("b", 0.1))
    early = cato().decide(NodeRequest(11.0, 100, 1, False), pool, now=10.0)
    late = cato().decide(NodeRequest(1001.0, 100, 1, False), pool, now=1000.0)
    assert early == late


# -- baselines -----------------------------------------------------------------------------

def test_round_robin_rotates_over_ready_replicas():
    pool = snap(ReplicaView("a"), ReplicaView("b"), ReplicaView("c", ready=False), ReplicaView("d"))
    rr = RoundRobinRouter()
    picks = [rr.decide(req(slack=1.0), pool, NOW).replica_id for _ in range(6)]
    assert picks == ["a", "b", "d", "a", "b", "d"]


def test_round_robin_keeps_rotating_when_the_pool_grows():
    rr = RoundRobinRouter()
    two = snap(ReplicaView("a"), ReplicaView("b"))
    three = snap(ReplicaView("a"), ReplicaView("b"), ReplicaView("c"))
    assert [rr.decide(req(1.0), two, NOW).replica_id for _ in range(2)] == ["a", "b"]
    assert [rr.decide(req(1.0), three, NOW).replica_id for _ in range(3)] == ["c", "a", "b"]


def test_round_robin_ignores_load_and_slack():
    pool = snap(busy("a", 100.0, queued=(5, 5, 5), queued_s=(9.0, 9.0, 9.0)), ReplicaView("b"))
    d = RoundRobinRouter().decide(req(slack=-5.0), pool, NOW)
    assert (d.replica_id, d.priority) == ("a", PRIORITY_ON_TIME)


def test_p2c_is_deterministic_for_a_seed_and_picks_less_loaded_of_two():
    views = [ReplicaView(f"r{i}", running=i % 4, queued=(0, 0, i % 3)) for i in range(10)]
    pool = snap(*views)
    load = dict(zip(pool.ids, pool.load.tolist()))

    def run(seed: int) -> list[str]:
        router = PowerOfTwoRouter(seed=seed)
        return [router.decide(req(1.0), pool, NOW).reason for _ in range(30)]

    reasons = run(7)
    assert reasons == run(7)
    assert reasons != run(8)
    for reason in reasons:  # "p2c: rA (la) vs rB (lb) -> rX"
        pair, chosen = reason.removeprefix("p2c: ").split(" -> ")
        a, b = (part.split(" (")[0] for part in pair.split(" vs "))
        assert a != b
        assert load[chosen] == min(load[a], load[b])


def test_p2c_with_two_ready_replicas_always_takes_the_less_loaded():
    pool = snap(ReplicaView("busy", running=5), ReplicaView("off", ready=False),
                ReplicaView("quiet", running=1))
    router = PowerOfTwoRouter(seed=3)
    assert {router.decide(req(1.0), pool, NOW).replica_id for _ in range(20)} == {"quiet"}


def test_p2c_with_one_ready_replica_takes_it_and_with_none_returns_no_replica():
    router = PowerOfTwoRouter()
    one = snap(ReplicaView("a", ready=False), ReplicaView("b"))
    assert router.decide(req(1.0), one, NOW).replica_id == "b"
    assert router.decide(req(1.0), snap(ReplicaView("a", ready=False)), NOW).replica_id is None


def test_least_loaded_picks_fewest_running_plus_queued_among_ready():
    pool = snap(ReplicaView("idle_but_off", ready=False),
                ReplicaView("a", running=1, queued=(0, 0, 2)),
                ReplicaView("b", running=2),
                ReplicaView("c", running=0, queued=(1, 1, 1)))
    d = LeastLoadedRouter().decide(req(1.0), pool, NOW)
    assert d.replica_id == "b"  # a and c have 3 each; ties would go to the lower index
    tie = snap(ReplicaView("x", running=2), ReplicaView("y", queued=(0, 2, 0)))
    assert LeastLoadedRouter().decide(req(1.0), tie, NOW).replica_id == "x"
    assert LeastLoadedRouter().decide(req(1.0), snap(), NOW).replica_id is None


def test_make_router_knows_every_policy_and_rejects_unknown_names():
    profile = online()
    assert make_router("cato", profile).ordering == "slack"
    for name in ("round_robin", "p2c", "least_loaded"):
        assert make_router(name, profile).ordering == "fifo"
        assert make_router(name, profile).name == name
    with pytest.raises(ValueError, match="unknown router policy 'fastest'"):
        make_router("fastest", profile)


# -- SLO tier (llm-d style) ----------------------------------------------------------------

def test_slo_tier_packs_onto_the_replica_with_the_least_headroom():
    pool = snap(busy("a", 0.5), busy("b", 0.1), ReplicaView("c"))
    d = SloTierRouter(online()).decide(req(1.0, to_first_token=True), pool, NOW)
    # predicted TTFT: a 0.5 + 0.2, b 0.1 + 0.2, c 0.2: all meet 1.0 s; a has the least room
    assert d.replica_id == "a" and d.priority == PRIORITY_ON_TIME
    assert "least headroom 0.300s among 3" in d.reason


def test_slo_tier_without_a_fitting_replica_favours_low_latency_deterministically():
    pool = snap(busy("slow", 9.0), busy("fast", 0.5))
    picks = [SloTierRouter(online(), seed=7).decide(req(0.1), pool, NOW).replica_id
             for _ in range(3)]
    assert picks == [SloTierRouter(online(), seed=7).decide(req(0.1), pool, NOW).replica_id] * 3
    router = SloTierRouter(online(), seed=1)
    counts = {"slow": 0, "fast": 0}
    for _ in range(400):
        counts[router.decide(req(0.1), pool, NOW).replica_id] += 1
    assert counts["fast"] > 4 * counts["slow"]  # weights 1/0.7 vs 1/9.2


def test_slo_tier_is_available_by_name():
    assert make_router("slo_tier", online()).name == "slo_tier"


# -- cato_plus: slot-exact waits (ours, beyond the paper) ------------------------------------

def test_slot_start_uses_the_first_slot_to_free_not_the_fluid_average():
    # two slots: one frees at 10.1, the other at 19.0; the fluid model says (0.1 + 9) / 2
    assert slot_start([10.1, 19.0], 2, [], NOW) == pytest.approx(10.1)
    # one request queued ahead (0.5 s of work) takes the first slot; the newcomer the next
    assert slot_start([10.1, 19.0], 2, [0.5], NOW) == pytest.approx(10.6)
    assert slot_start([10.1, 10.2], 2, [5.0, 5.0], NOW) == pytest.approx(15.1)
    # free slots: no wait while what is queued ahead fits in them
    assert slot_start([], 2, [1.0], NOW) == NOW
    assert slot_start([], 2, [1.0, 1.0], NOW) == pytest.approx(11.0)
    # ends already past (a request running over its prediction) count as ending now
    assert slot_start([9.0], 1, [], NOW) == NOW


def plus_snapshot(ends: dict[str, list[float]], ahead: dict[str, list[float]],
                  max_in_flight: int = 2) -> PoolSnapshot:
    views = [ReplicaView(rid, running=len(e), max_in_flight=max_in_flight,
                         running_left_s=sum(t - NOW for t in e)) for rid, e in ends.items()]
    ids = list(ends)
    base = snap(*views)
    return PoolSnapshot.build(base.ids, base.ready, base.running, base.max_in_flight,
                              base.running_left_s, base.queued, base.queued_s, online(),
                              schedule=lambda i, deadline: (ends[ids[i]], ahead.get(ids[i], [])))


def test_cato_plus_sees_a_slot_that_frees_early_where_algorithm_1_sees_none():
    # "a": slots free at 10.1 and 19.0 (fluid wait 4.55 s); "b": both at 13.0 (fluid 3.0 s)
    ends = {"a": [10.1, 19.0], "b": [13.0, 13.0]}
    r = req(0.5, to_first_token=True)
    plus = make_router("cato_plus", online()).decide(r, plus_snapshot(ends, {}), NOW)
    assert plus.replica_id == "a" and plus.priority == PRIORITY_ON_TIME
    assert plus.expected_wait_s == pytest.approx(0.1)
    fluid = cato().decide(r, plus_snapshot(ends, {}), NOW)
    assert fluid.priority == PRIORITY_AT_RISK and fluid.replica_id == "b"


def test_cato_plus_counts_the_work_queued_ahead_and_keeps_algorithm_1s_priorities():
    ends = {"a": [10.1, 19.0], "b": [13.0, 13.0]}
    router = make_router("cato_plus", online())
    # 4 s queued ahead on "a": its next slot is at 10.1 + 4 = 14.1 for the newcomer; b at 13
    d = router.decide(req(5.0, to_first_token=True), plus_snapshot(ends, {"a": [4.0]}), NOW)
    assert d.replica_id == "b" and d.expected_wait_s == pytest.approx(3.0)
    late = router.decide(req(0.5, to_first_token=True), plus_snapshot(ends, {"a": [4.0]}), NOW)
    assert late.priority == PRIORITY_AT_RISK and late.replica_id == "b"
    gone = router.decide(req(-1.0), plus_snapshot(ends, {}), NOW)
    assert gone.priority == PRIORITY_VIOLATED
    assert router.late_work_last and router.ordering == "slack"


def test_cato_plus_needs_the_pools_schedule():
    with pytest.raises(ValueError, match="needs a pool snapshot with a schedule"):
        make_router("cato_plus", online()).decide(req(1.0), snap(ReplicaView("a")), NOW)


def test_cato_plus_takes_a_free_slot_without_walking_any_schedule():
    def no_walk(i, deadline):
        raise AssertionError("a free slot needs no schedule")

    views = [ReplicaView("full", running=2, max_in_flight=2, running_left_s=1.0),
             ReplicaView("free", running=1, max_in_flight=2, running_left_s=0.5)]
    base = snap(*views)
    pool = PoolSnapshot.build(base.ids, base.ready, base.running, base.max_in_flight,
                              base.running_left_s, base.queued, base.queued_s, online(),
                              schedule=no_walk)
    d = make_router("cato_plus", online()).decide(req(1.0, to_first_token=True), pool, NOW)
    assert (d.replica_id, d.priority, d.expected_wait_s) == ("free", PRIORITY_ON_TIME, 0.0)
