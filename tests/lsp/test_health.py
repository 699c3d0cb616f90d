"""health.py: ok / degraded / unreachable from task results and connection failures."""

from __future__ import annotations

from cato_lsp.health import Health


def test_starts_ok_and_stays_ok_with_few_misses():
    h = Health("http://b", window=10, miss_threshold=3)
    assert h.state(0) == "ok"
    assert h.record(False, 1) is None
    assert h.record(False, 2) is None
    assert h.state(2) == "ok"


def test_recent_misses_make_it_degraded_and_hits_bring_it_back():
    h = Health("http://b", window=4, miss_threshold=2)
    h.record(False, 1)
    change = h.record(False, 2)
    assert change is not None and (change.before, change.after) == ("ok", "degraded")
    assert change.announce is None  # degraded is shown in the status, not a popup
    h.record(True, 3)
    h.record(True, 4)
    change = h.record(True, 5)  # the window of 4 holds one miss now
    assert change is not None and change.after == "ok"


def test_old_misses_are_forgotten():
    h = Health("http://b", window=10, miss_threshold=2, max_age_s=60)
    h.record(False, 0)
    h.record(False, 1)
    assert h.state(30) == "degraded"
    change = h.refresh(100, "degraded")
    assert change is not None and change.after == "ok"


def test_unreachable_is_announced_once_however_often_it_fails():
    h = Health("http://b")
    first = h.mark_unreachable("connection refused", 1)
    assert first is not None and first.after == "unreachable" and "http://b" in first.announce
    assert h.mark_unreachable("connection refused", 2) is None
    assert h.mark_unreachable("timeout", 3) is None
    assert h.reason == "timeout"


def test_coming_back_is_announced_once():
    h = Health("http://b")
    h.mark_unreachable("refused", 1)
    back = h.mark_reachable(2)
    assert back is not None and back.after == "ok" and "reachable again" in back.announce
    assert h.mark_reachable(3) is None


def test_a_served_task_also_proves_the_backend_is_back():
    h = Health("http://b")
    h.mark_unreachable("refused", 1)
    change = h.record(True, 2)
    assert change is not None and change.after == "ok" and change.announce
