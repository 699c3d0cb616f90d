"""Poisson, piecewise and burst arrivals: rates, determinism, order, what each request carries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cato_backend.config import DEFAULT_MAX_TOKENS
from cato_backend.schemas import TASK_REQUEST
from cato_backend.sim import workloads as W
from cato_backend.sim.requests import Request


def _count(reqs, kind=None, lo=-math.inf, hi=math.inf):
    return sum(1 for r in reqs if (kind is None or r.kind == kind) and lo <= r.t < hi)


def test_same_seed_same_workload_other_seed_another():
    a = W.poisson(W.paper_rates(2.0), 60, seed=5)
    b = W.poisson(W.paper_rates(2.0), 60, seed=5)
    c = W.poisson(W.paper_rates(2.0), 60, seed=6)
    assert a == b and [r.body for r in a] == [r.body for r in b]
    assert a != c


def test_poisson_counts_match_the_rates_within_tolerance():
    rates = {"completion": 3.33, "generation": 0.67, "translation": 2.0, "summarization": 1.33}
    duration = 2000.0
    reqs = W.poisson(rates, duration, seed=1, with_body=False)
    for kind, rate in rates.items():
        expected = rate * duration
        assert abs(_count(reqs, kind) - expected) < 4 * math.sqrt(expected), kind


def test_poisson_gaps_are_exponential():
    reqs = W.poisson({"completion": 5.0}, 2000, seed=2, with_body=False)
    gaps = np.diff([r.t for r in reqs])
    assert abs(gaps.mean() - 0.2) < 0.01
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # coefficient of variation of 1
    assert all(0 <= r.t < 2000 for r in reqs)


def test_scale_multiplies_the_rates():
    one = W.poisson({"summarization": 2.0}, 1000, seed=3, with_body=False)
    three = W.poisson({"summarization": 2.0}, 1000, seed=3, scale=3.0, with_body=False)
    assert abs(len(three) / len(one) - 3.0) < 0.25
    assert W.pool_scale(6) == pytest.approx(0.5)
    assert W.pool_scale(3, speed=2.0) == pytest.approx(0.5)


def test_streams_merge_in_time_order_and_kinds_are_independent():
    both = W.poisson({"completion": 2.0, "translation": 2.0}, 300, seed=9, with_body=False)
    assert [r.t for r in both] == sorted(r.t for r in both)
    alone = W.poisson({"completion": 2.0}, 300, seed=9, with_body=False)
    assert [r for r in both if r.kind == "completion"] == alone


def test_burst_is_low_high_low():
    low, high = W.paper_rates(0.5), W.paper_rates(5.0)
    reqs = W.burst(low, high, 600, start_s=200, length_s=100, seed=4, with_body=False)
    before, during, after = _count(reqs, hi=200), _count(reqs, lo=200, hi=300), _count(reqs, lo=300)
    for n, expected in [(before, 4 * 0.5 * 200), (during, 4 * 5.0 * 100), (after, 4 * 0.5 * 300)]:
        assert abs(n - expected) < 4 * math.sqrt(expected)
    assert [r.t for r in reqs] == sorted(r.t for r in reqs) and reqs[-1].t < 600


def test_piecewise_phases_follow_each_other():
    reqs = W.piecewise([(10, {"completion": 0}), (10, {"completion": 50.0})], seed=1,
                       start_s=100, with_body=False)
    assert reqs and all(110 <= r.t < 120 for r in reqs)


def test_requests_carry_valid_bodies_and_config_max_tokens():
    reqs = W.poisson(W.paper_rates(1.0), 120, seed=11)
    assert {r.kind for r in reqs} == set(W.KINDS)
    for r in reqs:
        assert isinstance(r, Request)
        assert r.max_tokens == DEFAULT_MAX_TOKENS[r.kind]
        assert 1 <= r.output_tokens <= r.max_tokens and r.prompt_tokens >= 1
        assert r.sla_ms is None and r.tenant is None
        task = TASK_REQUEST.validate_python(r.body)
        assert task.kind == r.kind and task.max_tokens == r.max_tokens and task.sla_ms is None


def test_overrides_reach_requests_and_bodies():
    reqs = W.poisson({"translation": 2.0}, 60, seed=1, max_tokens={"translation": 64},
                     sla_ms={"translation": 9000.0}, tenants=("a", "b"))
    assert reqs and all(r.max_tokens == 64 and r.output_tokens <= 64 for r in reqs)
    assert all(r.sla_ms == 9000.0 and r.body["sla_ms"] == 9000.0 for r in reqs)
    assert {r.tenant for r in reqs} == {"a", "b"}
    assert any(r.output_tokens == 64 for r in reqs)  # long translations are capped


def test_without_bodies_the_numbers_are_the_same():
    a = W.poisson(W.paper_rates(1.0), 60, seed=2)
    b = W.poisson(W.paper_rates(1.0), 60, seed=2, with_body=False)
    assert a == b and all(r.body is None for r in b)  # body is not part of equality


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        W.poisson({"chat": 1.0}, 10)
    with pytest.raises(ValueError, match="rate"):
        W.poisson({"completion": -1.0}, 10)
    with pytest.raises(ValueError, match="start_s"):
        W.burst({}, {}, 10, start_s=20, length_s=1)
    with pytest.raises(ValueError, match="max_tokens"):
        W.poisson({"completion": 1.0}, 10, max_tokens={"completion": 0})


def test_paper_presets_span_the_papers_rates():
    assert W.PAPER_RATE_LEVELS[0] == 0.67 and W.PAPER_RATE_LEVELS[-1] == 3.33
    assert W.PRESETS["paper-high"] == {k: 3.33 for k in W.KINDS}
    assert W.paper_rates(2.0, ["completion"]) == {"completion": 2.0}
