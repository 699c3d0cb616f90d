"""The simulated engine alone: continuous batching from a constructed profile, by hand."""

from __future__ import annotations

import pytest

from cato_backend.profiles import DecodePoint, EngineProfile
from cato_backend.sim.engine import SimEngine

# 10 ms overhead, 0.1 ms per prompt token; decode steps 10 / 12 / 16 ms at batch 1 / 2 / 4.
PROFILE = EngineProfile(
    model="m", hardware="h", engine="constructed", measured_at="2026-11-22",
    command="tests/sim (constructed)", max_model_len=4096, overhead_ms=10.0,
    prefill_ms_per_token=0.1,
    decode=[DecodePoint(batch=1, step_ms=10.0), DecodePoint(batch=2, step_ms=12.0),
            DecodePoint(batch=4, step_ms=16.0)],
)


def drive(engine: SimEngine, until: float = 10.0) -> list:
    """Call the engine at each of its events; every outcome, in order."""
    seen = []
    while (t := engine.next_event_at()) is not None and t <= until:
        out = engine.advance(t)
        seen += [("first", r.tag, t) for r in out.first_tokens]
        seen += [("done", r.tag, t) for r in out.finished]
    return seen


def test_a_request_alone_gets_prefill_then_one_step_per_further_token():
    e = SimEngine(PROFILE)
    req, out = e.admit("a", 100, 5, 1.0)
    assert not out.first_tokens and not out.finished
    drive(e)
    assert req.first_token_at == pytest.approx(1.0 + 0.010 + 0.010)  # overhead + prefill
    assert req.finished_at == pytest.approx(1.020 + 4 * 0.010)  # (n - 1) steps at batch 1
    assert e.running == 0 and e.completed == 1 and e.tokens == 5


def test_two_requests_slow_each_other_per_the_step_table():
    e = SimEngine(PROFILE)
    a, _ = e.admit("a", 100, 3, 0.0)
    b, _ = e.admit("b", 100, 5, 0.0)
    events = drive(e)
    # b prefills after a (a waits meanwhile), then both decode at 12 ms a step; a's 2 steps
    # end at 64 ms; b's last 2 steps run alone at 10 ms.
    assert a.first_token_at == pytest.approx(0.020)
    assert b.first_token_at == pytest.approx(0.040)
    assert a.finished_at == pytest.approx(0.040 + 2 * 0.012)
    assert b.finished_at == pytest.approx(0.064 + 2 * 0.010)
    assert [k for k, _, _ in events] == ["first", "first", "done", "done"]


def test_a_prefill_pauses_the_decoding_batch():
    e = SimEngine(PROFILE)
    a, _ = e.admit("a", 0, 11, 0.0)  # first token at 10 ms, then 10 steps
    drive(e, until=0.035)  # a decodes alone: 2.5 steps by 35 ms
    e.admit("b", 200, 1, 0.035)  # b's prefill (30 ms) stalls a
    drive(e)
    # a: 10 steps; by 35 ms 2.5 done at 10 ms; paused 30 ms; 7.5 more at 10 ms (b is gone).
    assert a.finished_at == pytest.approx(0.035 + 0.030 + 7.5 * 0.010)


def test_one_token_finishes_at_its_first_token():
    e = SimEngine(PROFILE)
    r, _ = e.admit("x", 50, 1, 2.0)
    out = e.advance(e.next_event_at())
    assert out.first_tokens == [r] and out.finished == [r]
    assert r.finished_at == r.first_token_at == pytest.approx(2.015)


def test_steps_past_the_table_extrapolate_like_the_profile():
    e = SimEngine(PROFILE, max_batch=2)
    assert e.step_s(8) == pytest.approx(PROFILE.decode_step_ms(8) / 1000)
