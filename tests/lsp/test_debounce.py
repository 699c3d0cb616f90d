"""debounce.py: the wait before an automatic completion follows the measured latency."""

from __future__ import annotations

from cato_lsp.debounce import AdaptiveDebounce


def test_without_samples_the_minimum_applies():
    assert AdaptiveDebounce(min_ms=30, max_ms=300).delay_ms() == 30


def test_wait_is_a_fraction_of_the_recent_latency():
    d = AdaptiveDebounce(min_ms=10, max_ms=1000, factor=0.5)
    d.observe(200)
    assert d.delay_ms() == 100


def test_a_slow_backend_means_a_longer_wait_up_to_the_maximum():
    d = AdaptiveDebounce(min_ms=10, max_ms=300, factor=0.5, alpha=0.5)
    d.observe(100)
    fast = d.delay_ms()
    for _ in range(10):
        d.observe(2000)
    assert fast < d.delay_ms() == 300


def test_a_fast_backend_stays_at_the_minimum():
    d = AdaptiveDebounce(min_ms=30, max_ms=300)
    d.observe(5)
    assert d.delay_ms() == 30


def test_ewma_moves_by_alpha():
    d = AdaptiveDebounce(alpha=0.25)
    d.observe(100)
    d.observe(200)
    assert d.latency_ms == 125


def test_explicit_requests_and_disabled_debounce_never_wait():
    d = AdaptiveDebounce()
    d.observe(400)
    assert d.delay_ms(explicit=True) == 0
    d.enabled = False
    assert d.delay_ms() == 0


def test_garbage_samples_are_ignored():
    d = AdaptiveDebounce()
    d.observe(float("nan"))
    d.observe(-5)
    assert d.latency_ms is None
