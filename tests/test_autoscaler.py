"""Autoscaling policies: paper Algorithm 2 (slack violations) and Ray Serve's default baseline.

Times are hand-ticked. Unless a test says otherwise the CATO policy counts violations in 10 s
windows opened by the first call at t=0 ([0, 10), [10, 20), ...), a window is exceeded when it
has more than 2 violations and more than the idle replicas, 2 exceeded windows in a row scale
up by ceil(violations / 3), replicas idle for 6 windows (60 s) go one at a time, and any change
is followed by a 30 s cooldown.
"""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from cato_backend.autoscaler import (
    Autoscaler,
    AutoscalerConfig,
    CatoScalingConfig,
    LoadSample,
    Outcome,
    RayScalingConfig,
    ReplicaInfo,
    ScalingContext,
    SlackEvent,
    apply_scaling_factors,
    count_violations,
    lookback_mean,
    make_autoscaler,
    removal_order,
)
from cato_backend.pool import ReplicaState

READY, STARTING, DRAINING = ReplicaState.READY, ReplicaState.STARTING, ReplicaState.DRAINING


def busy(rid: str, started: float = -100.0, ongoing: int = 3) -> ReplicaInfo:
    return ReplicaInfo(rid, READY, started_at=started, ready_at=started + 50, ongoing=ongoing)


def idle(rid: str, since: float = 0.0, started: float = -100.0) -> ReplicaInfo:
    return ReplicaInfo(rid, READY, started_at=started, ready_at=started + 50, idle_since=since)


def starting(rid: str, started: float) -> ReplicaInfo:
    return ReplicaInfo(rid, STARTING, started_at=started)


def violated(n: int, t: float, tag: str = "") -> tuple[SlackEvent, ...]:
    return tuple(SlackEvent(t + i * 0.01, f"{tag}{t}-{i}", Outcome.VIOLATED) for i in range(n))


def cato(**knobs) -> Autoscaler:
    bounds = {k: knobs.pop(k) for k in ("min_replicas", "max_replicas") if k in knobs}
    return Autoscaler(AutoscalerConfig(policy="cato", **{"min_replicas": 1, "max_replicas": 8,
                                                         **bounds},
                                       cato=CatoScalingConfig(**knobs)))


def ray(**knobs) -> Autoscaler:
    bounds = {k: knobs.pop(k) for k in ("min_replicas", "max_replicas") if k in knobs}
    return Autoscaler(AutoscalerConfig(policy="ray", **{"min_replicas": 1, "max_replicas": 8,
                                                        **bounds},
                                       ray=RayScalingConfig(**knobs)))


def run(auto: Autoscaler, ticks, replicas, events=(), state=None, **ctx_fields):
    """Decide at each tick with the same pool; returns the decisions and the last state."""
    out = []
    for now in ticks:
        decision, state = auto.decide(
            ScalingContext(now=now, replicas=tuple(replicas), events=tuple(events), **ctx_fields),
            state)
        out.append(decision)
    return out, state


# ------------------------------------------------------------------------------- CATO: windows


def test_first_call_opens_a_window_and_calls_inside_it_hold():
    decisions, state = run(cato(), [0.0, 5.0, 9.99], [busy("r0")], violated(9, 1.0))
    assert [d.action for d in decisions] == ["hold"] * 3
    assert "first window opens at t=0" in decisions[0].reason
    assert "window [0, 10) is open" in decisions[2].reason
    assert state.policy.window_start == 0.0 and state.policy.streak == 0


def test_violations_not_past_the_threshold_change_nothing():
    events = violated(2, 1.0) + violated(2, 11.0) + violated(2, 21.0)
    decisions, state = run(cato(), [0, 10, 20, 30], [busy("r0")], events)
    assert all(d.action == "hold" for d in decisions)
    assert decisions[-1].signal == 2 and "2 violations in [20, 30)" in decisions[-1].reason
    assert state.policy.streak == 0


def test_violations_not_more_than_idle_replicas_change_nothing():
    pool = [busy("r0")] + [idle(f"i{k}") for k in range(5)]
    events = violated(5, 1.0) + violated(5, 11.0) + violated(5, 21.0)
    decisions, state = run(cato(), [0, 10, 20, 30], pool, events)
    assert all(d.action == "hold" for d in decisions)
    assert "not more than the 5 idle replicas" in decisions[-1].reason
    assert state.policy.streak == 0


def test_one_exceeded_window_is_not_enough():
    decisions, state = run(cato(), [0, 10], [busy("r0")], violated(9, 1.0))
    assert decisions[-1].action == "hold"
    assert "for 1 of 2 windows" in decisions[-1].reason
    assert state.policy.streak == 1


def test_sustained_violations_scale_up_in_proportion():
    events = violated(9, 1.0) + violated(9, 11.0)
    decisions, _ = run(cato(), [0, 10, 20], [busy("r0")], events)
    d = decisions[-1]
    assert (d.action, d.current, d.target, d.delta) == ("up", 1, 4, 3)  # ceil(9 / 3) = 3
    assert d.reason.startswith("scale up +3: 9 violations in [10, 20)")
    assert "ceil(9/3) = 3 wanted, 0 on the way" in d.reason


def test_a_quiet_window_breaks_the_streak():
    events = violated(9, 1.0) + violated(1, 11.0) + violated(9, 21.0)
    decisions, state = run(cato(), [0, 10, 20, 30], [busy("r0")], events)
    assert [d.action for d in decisions] == ["hold"] * 4
    assert state.policy.streak == 1


def test_a_late_call_closes_every_window_it_missed():
    events = violated(9, 1.0) + violated(9, 11.0)
    decisions, state = run(cato(), [0, 20], [busy("r0")], events)  # no call at t=10
    assert decisions[-1].delta == 3
    assert state.policy.window_start == 20.0


def test_scale_up_is_capped_by_max_replicas():
    events = violated(30, 1.0) + violated(30, 11.0)  # wants +10
    decisions, _ = run(cato(max_replicas=4), [0, 10, 20], [busy("r0")], events)
    d = decisions[-1]
    assert (d.current, d.target) == (1, 4)
    assert "capped at 4 by max_replicas 4" in d.reason


def test_scale_up_is_capped_by_free_accelerators():
    events = violated(9, 1.0) + violated(9, 11.0)
    decisions, _ = run(cato(), [0, 10, 20], [busy("r0")], events, free_slots=1)
    assert (decisions[-1].current, decisions[-1].target) == (1, 2)
    assert "capped at 2 by 1 accelerator free" in decisions[-1].reason


def test_no_free_accelerator_holds_and_says_why():
    events = violated(9, 1.0) + violated(9, 11.0)
    decisions, _ = run(cato(), [0, 10, 20], [busy("r0")], events, free_slots=0)
    assert decisions[-1].action == "hold"
    assert decisions[-1].reason.startswith("hold: scale up +3")
    assert "0 accelerators free" in decisions[-1].reason


# ---------------------------------------------------------------------- CATO: cold starts


def test_replicas_still_starting_count_as_capacity_on_the_way():
    auto = cato(cooldown_s=0)  # the cooldown alone must not be what stops a second scale-up
    events = violated(9, 1.0) + violated(9, 11.0) + violated(9, 21.0)
    decisions, state = run(auto, [0, 10, 20], [busy("r0")], events, cold_start_s=60.0)
    assert decisions[-1].delta == 3
    # The server starts three; they take a minute; the violations go on meanwhile.
    pool = [busy("r0"), starting("n1", 20), starting("n2", 20), starting("n3", 20)]
    d, state = auto.decide(ScalingContext(30.0, pool, events, cold_start_s=60.0), state)
    assert (d.action, d.current) == ("hold", 4)
    assert "3 on the way (3 starting, first ready in ~50s)" in d.reason
    assert "no second scale-up" in d.reason
    # More violations than the starting replicas cover: only the difference is added.
    more = events + violated(15, 31.0)
    d, _ = auto.decide(ScalingContext(40.0, pool, more, cold_start_s=60.0), state)
    assert (d.current, d.target) == (4, 6)  # ceil(15 / 3) = 5 wanted, 3 on the way


def test_a_replica_starting_far_longer_than_a_cold_start_no_longer_counts():
    events = violated(9, 1.0) + violated(9, 11.0)
    pool = [busy("r0"), starting("stuck", -200.0)]  # 220 s > 2 x 60 s
    decisions, _ = run(cato(), [0, 10, 20], pool, events, cold_start_s=60.0)
    d = decisions[-1]
    assert (d.current, d.target) == (2, 5)
    assert "1 starting overdue, not counted" in d.reason


def test_a_replica_that_just_became_ready_still_counts_for_one_window():
    auto = cato(cooldown_s=0)
    events = violated(3, 1.0) + violated(3, 11.0) + violated(3, 21.0)  # ceil(3 / 3) = 1
    fresh = ReplicaInfo("n1", READY, started_at=-50.0, ready_at=10.0, ongoing=4)
    decisions, _ = run(auto, [0, 10, 20], [busy("r0"), fresh], events)
    assert decisions[-1].action == "hold" and "1 on the way (1 just ready)" in decisions[-1].reason
    decisions, _ = run(auto, [0, 10, 20, 30], [busy("r0"), fresh], events)
    assert decisions[-1].delta == 1  # worked a whole window and still violations: scale


# -------------------------------------------------------------------------- cooldown


def test_cooldown_blocks_any_change_after_scaling():
    events = violated(9, 1.0) + violated(9, 11.0) + violated(30, 21.0) + violated(30, 31.0) \
        + violated(30, 41.0)
    auto = cato()
    decisions, state = run(auto, [0, 10, 20], [busy("r0")], events)
    assert decisions[-1].delta == 3 and state.last_scaled_at == 20.0
    pool = [busy("r0"), busy("n1"), busy("n2"), busy("n3")]  # ready (and busy) in this test
    decisions, state = run(auto, [30, 40, 50], pool, events, state=state)
    assert [d.action for d in decisions] == ["hold", "hold", "up"]
    assert decisions[0].reason.startswith("hold: cooldown, 20s left after scaling at t=20")
    assert "policy wanted 8" in decisions[1].reason
    assert decisions[2].target == 8 and state.last_scaled_at == 50.0


# --------------------------------------------------------------------- CATO: scale down


def test_idle_replicas_go_after_the_hysteresis_one_at_a_time():
    pool = [busy("r0"), idle("a", since=0.0), idle("b", since=5.0), idle("c", since=8.0)]
    decisions, state = run(cato(), [0, 10, 20, 30, 40, 50, 60], pool)
    assert [d.action for d in decisions[:-1]] == ["hold"] * 6
    assert "no replica idle for 6 windows (60s)" in decisions[-2].reason
    d = decisions[-1]
    assert (d.action, d.target, d.remove) == ("down", 3, ("a",))  # idle longest
    assert "a idle for 60s >= 6 windows" in d.reason
    # a drains; b and c are long idle too but the cooldown spaces the removals.
    pool = [busy("r0"), idle("b", since=5.0), idle("c", since=8.0),
            ReplicaInfo("a", DRAINING, started_at=-100.0)]
    decisions, _ = run(cato(), [70, 80, 90], pool, state=state)
    assert [d.action for d in decisions] == ["hold", "hold", "down"]
    assert decisions[-1].remove == ("b",) and decisions[-1].current == 3


def test_a_replica_that_got_work_restarts_its_idle_count():
    pool = [busy("r0"), idle("a", since=55.0)]
    decisions, _ = run(cato(), [0, 10, 20, 30, 40, 50, 60, 70], pool)
    assert all(d.action == "hold" for d in decisions)


def test_scale_down_never_goes_below_min_replicas():
    pool = [idle("a", since=0.0), idle("b", since=0.0)]
    decisions, _ = run(cato(min_replicas=2), [0, 10, 20, 30, 40, 50, 60, 70], pool)
    assert all(d.action == "hold" for d in decisions)
    assert "at min_replicas 2" in decisions[-1].reason


def test_no_scale_down_in_a_window_whose_violations_passed_the_threshold():
    pool = [busy("r0"), idle("a", since=-100.0)]
    quiet, _ = run(cato(), [0, 10], pool)
    assert quiet[-1].remove == ("a",)
    late, _ = run(cato(), [0, 10], pool, violated(3, 1.0))  # 3 > threshold 2
    assert late[-1].action == "hold"


def test_scale_to_zero_and_back_on_the_first_request():
    auto = cato(min_replicas=0)
    decisions, state = run(auto, [0, 10, 20, 30, 40, 50, 60], [idle("a", since=0.0)])
    assert (decisions[-1].target, decisions[-1].remove) == (0, ("a",))
    decisions, state = run(auto, [70], [], state=state)
    assert decisions[-1].action == "hold" and decisions[-1].current == 0  # nobody asks
    # A request arrives 5 s later: inside the cooldown, yet it must not wait for it.
    d, _ = auto.decide(ScalingContext(75.0, (), waiting=1, cold_start_s=55.0), state)
    assert (d.action, d.target) == ("up", 1)
    assert "scale from zero: 1 requests wait; the first waits a cold start (~55s)" in d.reason


def test_scale_from_zero_needs_a_free_accelerator():
    d, _ = cato(min_replicas=0).decide(ScalingContext(0.0, (), waiting=2, free_slots=0))
    assert d.action == "hold" and "0 accelerators free" in d.reason


def test_below_min_replicas_is_restored_at_once_even_in_cooldown():
    auto = cato()
    events = violated(9, 1.0) + violated(9, 11.0)
    _, state = run(auto, [0, 10, 20], [busy("r0")], events)
    d, _ = auto.decide(ScalingContext(25.0, ()), state)  # every replica died
    assert (d.action, d.target) == ("up", 1) and "restoring bounds" in d.reason


# --------------------------------------------------------------- CATO: what is counted


def test_cancelled_work_is_not_a_violation():
    events = violated(9, 1.0) + violated(9, 11.0)
    cancels = tuple(SlackEvent(e.t + 1, e.node_id, Outcome.CANCELLED) for e in events)
    met = tuple(SlackEvent(2.0 + i, f"ok{i}", Outcome.MET) for i in range(20))
    decisions, state = run(cato(), [0, 10, 20], [busy("r0")], events + cancels + met)
    assert all(d.action == "hold" for d in decisions)
    assert "0 violations in [10, 20) (9 cancelled, ignored)" in decisions[-1].reason
    assert state.policy.streak == 0


def test_a_node_counts_once_per_window():
    twice = violated(3, 1.0) + violated(3, 2.0)  # ids differ by start time
    same = violated(3, 1.0) + tuple(dataclasses.replace(e, t=e.t + 5) for e in violated(3, 1.0))
    assert count_violations(twice, 0, 10) == (6, 0)
    assert count_violations(same, 0, 10) == (3, 0)
    assert count_violations(violated(1, 10.0), 0, 10) == (0, 0)  # the end belongs to the next


# ------------------------------------------------------------------------------------- Ray


def load(*points: tuple[float, float]) -> tuple[LoadSample, ...]:
    return tuple(LoadSample(t, v) for t, v in points)


def test_lookback_mean_is_time_weighted_over_the_window():
    samples = load((0, 0), (20, 12))
    assert lookback_mean(samples, 0, 30) == pytest.approx(4.0)  # (0 * 20 + 12 * 10) / 30
    assert lookback_mean(samples, 10, 40) == pytest.approx(8.0)  # (0 * 10 + 12 * 20) / 30
    assert lookback_mean(load((-100, 5)), 0, 30) == 5.0  # held from before the window
    assert lookback_mean(load((25, 6)), 0, 30) == 6.0  # no sample before: starts at 25
    assert lookback_mean((), 0, 30) == 0.0
    assert lookback_mean(load((50, 9)), 0, 30) == 0.0  # the future is ignored


def test_ray_scales_to_ceil_ongoing_over_target_after_the_upscale_delay():
    decisions, _ = run(ray(), [0, 10, 29.9, 30], [busy("r0")], load=load((-60, 7)))
    assert [d.action for d in decisions] == ["hold", "hold", "hold", "up"]
    assert "upscale delay 29.9/30s" in decisions[2].reason
    d = decisions[-1]
    assert (d.current, d.target) == (1, 4)  # ceil(7 / 2)
    assert d.signal == 7.0 and "wanted for 30s >= upscale_delay_s 30" in d.reason


def test_ray_upscale_wish_must_hold_without_a_break():
    samples = load((-60, 7), (14, 1), (16, 7))
    ticks = [0, 10, 15, 20, 30, 45]
    decisions, _ = run(ray(look_back_period_s=1.0), ticks, [busy("r0")], load=samples)
    assert [d.action for d in decisions] == ["hold", "hold", "hold", "hold", "hold", "hold"]
    d, _ = run(ray(look_back_period_s=1.0), ticks + [50], [busy("r0")], load=samples)
    assert d[-1].action == "up"  # 30 s after the wish came back at t=20


def test_ray_uses_the_look_back_average_not_the_last_sample():
    # A burst of 12 at t=20 after 20 s of nothing: the 30 s average is 4 -> 2 replicas.
    decisions, _ = run(ray(upscale_delay_s=0), [30], [busy("r0")], load=load((0, 0), (20, 12)))
    assert decisions[-1].target == 2
    assert "avg 4 ongoing over 30s / target 2 -> 2 replicas" in decisions[-1].reason


def test_ray_scales_down_only_after_the_downscale_delay():
    pool = [busy(f"r{k}", started=float(k)) for k in range(4)]
    ticks = [0, 300, 599, 600]
    decisions, _ = run(ray(), ticks, pool, load=load((-60, 2)))  # 2 / 2 -> 1 replica
    assert [d.action for d in decisions] == ["hold", "hold", "hold", "down"]
    assert "downscale delay 599/600s" in decisions[2].reason
    d = decisions[-1]
    assert (d.current, d.target) == (4, 1)
    assert d.remove == ("r3", "r2", "r1")  # Ray stops the newest first


def test_ray_removes_starting_replicas_first():
    pool = [busy("r0", started=0.0), busy("r1", started=5.0), starting("s", 500.0)]
    decisions, _ = run(ray(downscale_delay_s=0), [600], pool, load=load((0, 2)))
    assert decisions[-1].remove == ("s", "r1")


def test_ray_reaches_zero_only_from_one_replica():
    auto = ray(min_replicas=0, downscale_to_zero_delay_s=60.0)
    pool = [idle("a", started=0.0), idle("b", started=1.0)]
    decisions, _ = run(auto, [0, 600], pool, load=load((0, 0)))
    assert (decisions[-1].target, decisions[-1].remove) == (1, ("b",))
    decisions, _ = run(auto, [700, 760], [idle("a", started=0.0)], load=load((0, 0)))
    assert decisions[-1].target == 0 and "downscale_to_zero_delay_s 60" in decisions[-1].reason


def test_ray_counts_starting_replicas_in_its_target():
    pool = [busy("r0"), starting("s1", 0), starting("s2", 0), starting("s3", 0)]
    decisions, _ = run(ray(), [0, 30, 60], pool, load=load((-60, 8)))  # 8 / 2 -> 4 = target
    assert all(d.action == "hold" for d in decisions)


def test_ray_is_bounded_by_max_replicas_and_free_accelerators():
    d1, _ = run(ray(max_replicas=3, upscale_delay_s=0), [0], [busy("r0")], load=load((0, 20)))
    assert d1[-1].target == 3
    d2, _ = run(ray(upscale_delay_s=0), [0], [busy("r0")], load=load((0, 20)), free_slots=2)
    assert d2[-1].target == 3 and "by 2 accelerators free" in d2[-1].reason


def test_ray_scaling_factors_follow_ray():
    assert apply_scaling_factors(7 / 2, 1, 1.0, 1.0) == 4
    assert apply_scaling_factors(10.0, 2, 0.5, 1.0) == 6  # 2 + 0.5 * 8
    assert apply_scaling_factors(3.0, 4, 1.0, 0.1) == 3  # stuck at 4 by rounding: minus one
    assert apply_scaling_factors(2.5, 0, 1.0, 1.0) == 3


# ------------------------------------------------------------------------- both policies


def trace():
    """A minute and a half of a pool under load, then idle, with a replica starting."""
    ctxs = []
    for k in range(0, 200, 5):
        now = float(k)
        pool = [busy("r0", started=-100)] if now < 60 else [idle("r0", since=60, started=-100)]
        if 25 <= now < 85:
            pool.append(starting("n1", 25.0))
        elif now >= 85:
            pool.append(ReplicaInfo("n1", READY, 25.0, ready_at=85.0, idle_since=85.0))
        events = tuple(e for e in violated(8, 0.0) + violated(8, 10.0) + violated(8, 20.0)
                       + violated(8, 30.0) if e.t <= now)
        samples = tuple(s for s in load((0, 9), (60, 0)) if s.t <= now)
        ctxs.append(ScalingContext(now, tuple(pool), events, samples, free_slots=4,
                                   cold_start_s=60.0))
    return ctxs


@pytest.mark.parametrize("make", [cato, ray])
def test_the_same_trace_replays_the_same_decisions(make):
    first = make().replay(trace())
    again = make().replay(trace())
    assert first == again
    assert any(d.action != "hold" for d in first)


@pytest.mark.parametrize("make", [cato, ray])
def test_every_decision_carries_a_reason(make):
    for d in make().replay(trace()):
        assert d.reason and d.policy == make().config.policy
        assert d.delta == d.target - d.current and len(d.remove) == max(0, -d.delta)


def test_inputs_and_decisions_are_frozen():
    ctx = ScalingContext(0.0, [busy("r0")])
    assert isinstance(ctx.replicas, tuple)
    d, _ = cato().decide(ctx)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.now = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.target = 9  # type: ignore[misc]


def test_removal_order_prefers_starting_then_least_busy_then_longest_idle():
    pool = [busy("b1", ongoing=1), busy("b5", ongoing=5), idle("i_new", since=50),
            idle("i_old", since=10), starting("s", 40), ReplicaInfo("d", DRAINING, 0.0)]
    assert [r.id for r in removal_order(pool, 60.0)] == ["s", "i_old", "i_new", "b1", "b5"]


def test_config_knobs_are_validated_and_read_from_plain_data():
    auto = make_autoscaler({"policy": "ray", "min_replicas": 0, "max_replicas": 2,
                            "ray": {"target_ongoing_requests": 4}})
    assert auto.config.ray.target_ongoing_requests == 4 and auto.retention_s == 30.0
    assert make_autoscaler().retention_s == 30.0  # CATO: 3 windows of 10 s
    with pytest.raises(ValidationError, match="min_replicas"):
        AutoscalerConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ValidationError):
        AutoscalerConfig(cato={"window_seconds": 5})  # unknown knob
    with pytest.raises(ValidationError):
        CatoScalingConfig(violations_per_replica=0)


# ------------------------------------------------------- CATO+: consolidation (ours, opt-in)


def slotted(rid: str, ongoing: int, started: float = -100.0) -> ReplicaInfo:
    return ReplicaInfo(rid, READY, started_at=started, ready_at=started + 50, ongoing=ongoing,
                       slots=8)


def steady(ongoing: float, until: float = 60.0) -> tuple[LoadSample, ...]:
    return tuple(LoadSample(float(t), ongoing) for t in range(0, int(until) + 1, 5))


def test_consolidation_removes_the_least_busy_replica_after_six_calm_windows():
    # 4 replicas x 8 slots, peak 10 ongoing: 3 replicas' 24 slots would be 42% full (<= 50%)
    pool = [slotted("a", 3), slotted("b", 1), slotted("c", 3), slotted("d", 3)]
    decisions, _ = run(cato(consolidate_below=0.5), [0, 10, 20, 30, 40, 50, 60], pool,
                       load=steady(10))
    assert [d.action for d in decisions] == ["hold"] * 6 + ["down"]
    d = decisions[-1]
    assert d.remove == ("b",) and d.target == 3
    assert "calm for 6 windows and peak 10 ongoing <= 0.5 x 24 slots" in d.reason
    # Algorithm 2 as published never removes a busy replica
    plain, _ = run(cato(), [0, 10, 20, 30, 40, 50, 60], pool, load=steady(10))
    assert all(x.action == "hold" for x in plain)


def test_consolidation_waits_for_calm_and_for_room():
    pool = [slotted("a", 6), slotted("b", 6), slotted("c", 6)]
    # peak 13 would fill 13 / 16 slots of two replicas: over half, so all stay
    crowded, _ = run(cato(consolidate_below=0.5), [0, 10, 20, 30, 40, 50, 60, 70], pool,
                     load=steady(13, 70))
    assert all(x.action == "hold" for x in crowded)
    # one violation in [50, 60) restarts the calm count: no removal at 60 or 70
    shaken, _ = run(cato(consolidate_below=0.5), [0, 10, 20, 30, 40, 50, 60, 70],
                    [slotted("a", 1), slotted("b", 1), slotted("c", 1)], violated(1, 55.0),
                    load=steady(3, 70))
    assert all(x.action == "hold" for x in shaken)
    # slots not known (0): no consolidation
    blind = [ReplicaInfo(r, READY, started_at=-100, ready_at=-50, ongoing=1) for r in "abc"]
    unknown, _ = run(cato(consolidate_below=0.5), [0, 10, 20, 30, 40, 50, 60], blind,
                     load=steady(3))
    assert all(x.action == "hold" for x in unknown)
