"""The profiler: baselines from an engine profile, corrected online by what the engine shows.

Made-up profile: TTFT = 0.1 s + 1 ms per prompt token; decode 10 ms a step at batch 1, 80 ms
at batch 8 (linear in between, and beyond).
"""

from __future__ import annotations

import numpy as np
import pytest

from cato_backend.graph import NodeKind, graph_for
from cato_backend.kinds import SlaMetric, TaskKind
from cato_backend.profiler import (
    CONDITIONAL_RUN_PRIOR,
    FACTOR_BOUNDS,
    NON_LLM_PRIOR_S,
    LlmCall,
    OnlineProfile,
    Profiler,
)
from cato_backend.profiles import DecodePoint, EngineProfile

PROFILE = EngineProfile(
    model="m", hardware="test", engine="test", measured_at="2026-01-01", command="hand-made",
    max_model_len=4096, overhead_ms=100.0, prefill_ms_per_token=1.0,
    decode=[DecodePoint(batch=1, step_ms=10.0), DecodePoint(batch=8, step_ms=80.0)],
)
CALL = LlmCall(model="m", prompt_tokens=100, max_tokens=11)  # TTFT 0.2 s, 10 steps of 10 ms
TTFT_S, E2E_S = 0.2, 0.3


def profiler(alpha: float = 0.1) -> Profiler:
    return Profiler({"m": OnlineProfile(PROFILE)}, alpha=alpha)


# -- OnlineProfile -------------------------------------------------------------------------

def test_online_profile_starts_at_the_engine_profile():
    p = OnlineProfile(PROFILE)
    assert p.ttft_s(100) == pytest.approx(0.2)
    assert p.step_s(1) == pytest.approx(0.010)
    assert p.step_s(8) == pytest.approx(0.080)
    assert p.service_s(100, 11) == pytest.approx(0.3)
    assert p.max_model_len == 4096


def test_online_ttft_correction_moves_toward_observations():
    p = OnlineProfile(PROFILE, alpha=0.1)
    factors = []
    for _ in range(50):
        p.observe_ttft(100, observed_s=0.4)  # twice the prediction
        factors.append(p.ttft_factor)
    assert factors[0] == pytest.approx(1.1)
    assert all(a < b for a, b in zip(factors, factors[1:]))
    assert 1.9 < factors[-1] < 2.0
    assert p.ttft_s(100) == pytest.approx(0.2 * factors[-1])


def test_online_decode_correction_moves_toward_observations():
    p = OnlineProfile(PROFILE, alpha=0.5)
    p.observe_decode(tokens=11, observed_s=0.05, mean_batch=1.0)  # half the predicted 0.1 s
    assert p.decode_factor == pytest.approx(0.75)
    assert p.step_s(1) == pytest.approx(0.0075)
    assert p.step_s_array(np.array([1, 8])).tolist() == pytest.approx([0.0075, 0.060])


def test_online_decode_correction_is_relative_to_the_batch_it_ran_at():
    p = OnlineProfile(PROFILE, alpha=1.0)
    p.observe_decode(tokens=11, observed_s=0.8, mean_batch=8.0)  # exactly as predicted at batch 8
    assert p.decode_factor == pytest.approx(1.0)


@pytest.mark.parametrize("ratio, bound", [(100.0, FACTOR_BOUNDS[1]), (0.001, FACTOR_BOUNDS[0])])
def test_online_correction_stays_within_factor_bounds(ratio, bound):
    p = OnlineProfile(PROFILE, alpha=0.5)
    for _ in range(100):
        p.observe_ttft(100, observed_s=0.2 * ratio)
        p.observe_decode(11, observed_s=0.1 * ratio, mean_batch=1.0)
        assert FACTOR_BOUNDS[0] <= p.ttft_factor <= FACTOR_BOUNDS[1]
        assert FACTOR_BOUNDS[0] <= p.decode_factor <= FACTOR_BOUNDS[1]
    assert p.ttft_factor == bound and p.decode_factor == bound


def test_online_profile_ignores_observations_it_cannot_compare():
    p = OnlineProfile(PROFILE)
    p.observe_ttft(100, observed_s=0.0)
    p.observe_decode(tokens=1, observed_s=0.5, mean_batch=1.0)  # one token: no decode step
    p.observe_decode(tokens=11, observed_s=-1.0, mean_batch=1.0)
    assert (p.ttft_factor, p.decode_factor) == (1.0, 1.0)


def test_step_s_array_agrees_with_step_s_inside_and_beyond_the_table():
    p = OnlineProfile(PROFILE, max_batch=4)  # a table up to batch 4; batch 10 is beyond it
    p.decode_factor = 1.5
    batches = np.array([0, 1, 2, 4, 5, 8, 10])
    assert p.step_s_array(batches).tolist() == pytest.approx([p.step_s(int(b)) for b in batches])
    assert p.step_s(10) == pytest.approx(0.100 * 1.5)  # linear past the last measured point


# -- Profiler baselines --------------------------------------------------------------------

def test_ttft_baseline_of_output_node_counts_only_time_to_first_token():
    g = graph_for(TaskKind.COMPLETION)
    assert profiler().baselines(g, SlaMetric.TTFT, {"fim": CALL}) == {"fim": pytest.approx(TTFT_S)}


def test_e2e_baseline_of_output_node_counts_the_whole_answer():
    g = graph_for(TaskKind.SUMMARIZATION)
    b = profiler().baselines(g, SlaMetric.E2E, {"summarize": CALL})
    assert b == {"summarize": pytest.approx(E2E_S)}


def test_generation_baselines_are_context_prior_then_first_token():
    g = graph_for(TaskKind.GENERATION)
    b = profiler().baselines(g, SlaMetric.TTFT, {"generate": CALL})
    assert b == {"gather_context": NON_LLM_PRIOR_S[NodeKind.CONTEXT], "generate": pytest.approx(TTFT_S)}


def test_non_llm_node_baseline_follows_observations():
    p = profiler(alpha=0.5)
    g = graph_for(TaskKind.GENERATION)
    p.observe_node("generation", "gather_context", 0.010)  # the first observation is taken as is
    assert p.baselines(g, SlaMetric.TTFT, {"generate": CALL})["gather_context"] == pytest.approx(0.010)
    p.observe_node("generation", "gather_context", 0.020)
    assert p.baselines(g, SlaMetric.TTFT, {"generate": CALL})["gather_context"] == pytest.approx(0.015)


def test_conditional_node_baseline_is_weighted_by_how_often_it_runs():
    p = profiler(alpha=0.5)
    g = graph_for(TaskKind.TRANSLATION)
    calls = {"translate": CALL, "repair": CALL}
    b = p.baselines(g, SlaMetric.E2E, calls)
    assert b["translate"] == pytest.approx(E2E_S)
    assert b["validate"] == NON_LLM_PRIOR_S[NodeKind.VALIDATE]
    assert b["repair"] == pytest.approx(E2E_S * CONDITIONAL_RUN_PRIOR)
    p.observe_run("translation", "repair", ran=True)  # 0.2 -> 0.6
    assert p.baselines(g, SlaMetric.E2E, calls)["repair"] == pytest.approx(E2E_S * 0.6)
    for _ in range(30):
        p.observe_run("translation", "repair", ran=False)
    assert p.baselines(g, SlaMetric.E2E, calls)["repair"] < E2E_S * 1e-6


def test_output_ratio_shrinks_the_expected_output():
    p = profiler(alpha=0.5)
    assert p.expected_output_tokens("summarization", "summarize", 100) == 100  # prior: all of it
    p.observe_output("summarization", "summarize", max_tokens=100, produced=20)  # 1 -> 0.6
    assert p.expected_output_tokens("summarization", "summarize", 100) == 60
    assert p.expected_output_tokens("summarization", "other", 100) == 100  # per node
    b = p.baselines(graph_for(TaskKind.SUMMARIZATION), SlaMetric.E2E,
                    {"summarize": LlmCall("m", 100, max_tokens=101)})
    assert b["summarize"] == pytest.approx(0.2 + 60 * 0.010)  # 61 tokens: 60 decode steps


def test_output_ratio_is_capped_at_the_whole_budget_and_at_least_one_token():
    p = profiler(alpha=1.0)
    p.observe_output("completion", "fim", max_tokens=10, produced=50)
    assert p.expected_output_tokens("completion", "fim", 10) == 10
    p.observe_output("completion", "fim", max_tokens=10, produced=0)
    assert p.expected_output_tokens("completion", "fim", 10) == 1
    p.observe_output("completion", "fim", max_tokens=0, produced=5)  # ignored, no division
    assert p.expected_output_tokens("completion", "fim", 10) == 1


def test_baselines_follow_the_online_profile_correction():
    online = OnlineProfile(PROFILE)
    p = Profiler({"m": online})
    online.ttft_factor = 2.0
    b = p.baselines(graph_for(TaskKind.COMPLETION), SlaMetric.TTFT, {"fim": CALL})
    assert b["fim"] == pytest.approx(2 * TTFT_S)
