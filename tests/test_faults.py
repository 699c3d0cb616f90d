"""Load and replica faults end to end, short versions of `cato-bench load` (the long run's
results are in bench/results/load.*): a real `cato-backend serve` process over emulated
replica processes on loopback, open-loop Poisson load of mixed kinds.

What is pinned: no accepted request vanishes (each ends with `done` or an explicit error);
a replica killed mid-load is marked stopped and the autoscaler replaces it; a hung
(SIGSTOPped) replica is marked unhealthy, its streams end by the idle / first-token timeouts
(retried elsewhere when no token had been sent), and it serves again after SIGCONT.
"""

from __future__ import annotations

from cato_backend.bench.load import LoadConfig, run_load

EXPLICIT = {"done", "error", "http_4xx", "http_5xx"}


def test_short_load_loses_nothing_and_memory_stays_flat(tmp_path):
    cfg = LoadConfig(rate=20, duration_s=20, warmup_s=5, kill_at_s=None, hang_at_s=None,
                     min_replicas=2, max_replicas=2, progress=False)
    p = run_load(cfg, tmp_path)
    assert p["requests"] > 300
    assert p["lost"] == 0, p["lost_examples"]
    assert p["outcomes"] == {"done": p["requests"]}, p["error_examples"]
    assert p["rss"]["growth"] < 0.25, p["rss"]  # 15 s is short; the long run uses 10%
    assert p["backend_log_tracebacks"] == 0


def test_killed_and_hung_replicas_lose_no_request_and_the_pool_recovers(tmp_path):
    cfg = LoadConfig(rate=15, duration_s=30, warmup_s=3, kill_at_s=6, hang_at_s=15, hang_s=5,
                     baseline_s=5, min_replicas=2, max_replicas=4, progress=False)
    p = run_load(cfg, tmp_path)
    assert p["lost"] == 0, p["lost_examples"]
    assert set(p["outcomes"]) <= EXPLICIT
    # Explicit errors come only from streams cut on the faulty replica after their first
    # token (or a timeout); nothing else fails.
    assert all(c.split(":")[-1] in ("timeout", "protocol", "unreachable")
               for c in p["not_done_by_class"]), p["not_done_by_class"]
    assert p["outcomes"].get("done", 0) >= p["requests"] - 20

    kill, hang = p["faults"]
    assert kill["kind"] == "kill" and hang["kind"] == "hang"
    marks = kill["marks_after_fault_s"]
    assert marks["marked_stopped"] < 3.0, marks  # health loop: process exited
    assert marks["added_replica_ready"] < 10.0, marks  # autoscaler restores min_replicas
    assert set(kill["in_flight_at_fault"]["outcomes"]) <= EXPLICIT

    marks = hang["marks_after_fault_s"]
    assert marks["marked_unhealthy"] < 3.0, marks  # health check timed out
    assert marks["healthy_again"] - (hang["resumed_at_s"] - hang["at_s"]) < 3.0, marks
    assert set(hang["in_flight_at_fault"]["outcomes"]) <= EXPLICIT
    for f in (kill, hang):
        assert f["recovery"]["recovery_s"] is not None and f["recovery"]["recovery_s"] < 8, f

    final = {r["id"]: r for r in p["replicas_final"]}
    assert final[kill["replica"]]["state"] == "stopped"
    assert final[hang["replica"]]["state"] == "ready" and final[hang["replica"]]["healthy"]
    assert sum(r["state"] == "ready" for r in final.values()) >= 2
