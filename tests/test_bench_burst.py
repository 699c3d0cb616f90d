"""`cato-bench burst`: the metrics from hand-made records, the seeded schedule, the emulated
cold start, and a tiny run of both policies end to end (files written, nothing lost).

Numbers come from the full run written to bench/results/burst.*, never from this test."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from cato_backend.bench.burst import (
    BurstConfig,
    Record,
    arrival_times,
    goodput_between,
    goodput_series,
    integrate_steps,
    phases,
    policy_metrics,
    prefix_text,
    recovery_time,
    replica_capacity_rps,
)
from cato_backend.bench.cli import main
from cato_backend.emulator import start_emulator
from cato_backend.profiles import DecodePoint, EngineProfile
from cato_backend.provisioner import free_port

# A slow constructed profile (NOT measured): one replica saturates at a few requests/s, so a
# burst needing several replicas stays light for a 2-core test machine.
SLOW = EngineProfile(
    model="burst-test-model", hardware="test", engine="emulated", measured_at="2026-11-22",
    command="tests/test_bench_burst.py (made up)", max_model_len=4096,
    overhead_ms=50.0, prefill_ms_per_token=0.0,
    decode=[DecodePoint(batch=1, step_ms=20.0), DecodePoint(batch=4, step_ms=30.0)],
)


def _series(goodputs: list[float | None], start: float = 0.0, bin_s: float = 5.0) -> list[dict]:
    return [{"t": start + k * bin_s, "n": 0 if g is None else 10,
             "met": 0 if g is None else round(10 * g), "goodput": g}
            for k, g in enumerate(goodputs)]


# -- recovery time ---------------------------------------------------------------------------

def test_recovery_is_the_first_bin_that_stays_above_the_threshold() -> None:
    # burst [10, 60): bins at 10, 15, ...; dips, one good bin, a dip, then good for good
    s = _series([1.0, 1.0, 0.2, 0.5, 0.95, 0.4, 0.92, 0.95, 1.0, 1.0, 1.0, 1.0], start=0.0)
    assert recovery_time(s, 10.0, 60.0, 5.0, 0.9, hold_s=10.0) == pytest.approx(20.0)
    # the lone good bin at 20 counts when one bin of hold is enough
    assert recovery_time(s, 10.0, 60.0, 5.0, 0.9, hold_s=5.0) == pytest.approx(10.0)


def test_recovery_is_zero_when_goodput_never_dips() -> None:
    s = _series([1.0] * 12)
    assert recovery_time(s, 10.0, 60.0, 5.0, 0.9, hold_s=20.0) == 0.0


def test_recovery_is_none_when_the_hold_does_not_fit_in_the_burst() -> None:
    # good only in the last 10 s of the burst [0, 30), hold 20 s: not recovered
    s = _series([0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0])
    assert recovery_time(s, 0.0, 30.0, 5.0, 0.9, hold_s=20.0) is None
    assert recovery_time(s, 0.0, 40.0, 5.0, 0.9, hold_s=20.0) == pytest.approx(20.0)


def test_an_empty_bin_does_not_break_a_recovery() -> None:
    s = _series([0.0, None, 0.95, 1.0, 1.0])
    assert recovery_time(s, 0.0, 25.0, 5.0, 0.9, hold_s=10.0) == pytest.approx(5.0)


def test_the_threshold_is_inclusive() -> None:
    s = _series([0.5, 0.9, 0.9])
    assert recovery_time(s, 0.0, 15.0, 5.0, 0.9, hold_s=10.0) == pytest.approx(5.0)


# -- goodput ---------------------------------------------------------------------------------

def test_goodput_bins_by_issue_time_and_counts_lost_as_not_met() -> None:
    recs = [Record(0.5, "a", True), Record(4.9, "a", False), Record(5.0, "b", True),
            Record(6.0, "b", None, error="lost"), Record(11.0, "b", True),
            Record(12.0, "b", True), Record(-1.0, "x", True), Record(13.0, "x", False)]
    s = goodput_series(recs, 0.0, 12.5, 5.0)
    assert [b["t"] for b in s] == [0.0, 5.0, 10.0]  # the last bin is shorter
    assert [(b["n"], b["met"]) for b in s] == [(2, 1), (2, 1), (2, 2)]
    assert [b["goodput"] for b in s] == [0.5, 0.5, 1.0]
    assert goodput_series([], 0.0, 10.0, 5.0)[0]["goodput"] is None
    g = goodput_between(recs, 5.0, 12.0)
    assert g == {"issued": 3, "met": 2, "goodput": pytest.approx(2 / 3)}
    assert goodput_between(recs, 100.0, 200.0)["goodput"] is None


# -- replica-seconds -------------------------------------------------------------------------

def test_replica_seconds_integrate_the_replica_count_as_steps() -> None:
    samples = [(0.0, 1), (10.0, 3), (20.0, 1)]
    assert integrate_steps(samples, 0.0, 30.0) == pytest.approx(10 + 30 + 10)
    assert integrate_steps(samples, 5.0, 25.0) == pytest.approx(5 + 30 + 5)
    # before the first sample the first value holds; after the last, the last
    assert integrate_steps([(2.0, 2), (4.0, 4)], 0.0, 6.0) == pytest.approx(2 * 4 + 4 * 2)
    assert integrate_steps([], 0.0, 10.0) == 0.0
    assert integrate_steps([(0.0, 5)], 3.0, 3.0) == 0.0


def test_policy_metrics_from_hand_made_inputs() -> None:
    cfg = BurstConfig(before_s=10, burst_s=40, after_s=10, bin_s=5, recovery_hold_s=10,
                      recovery_threshold=0.9)
    ph = phases(cfg, capacity_rps=1.0)
    assert [(p["name"], p["start_s"], p["end_s"]) for p in ph] == [
        ("before", 0, 10), ("burst", 10, 50), ("after", 50, 60)]
    recs = []
    for t in range(60):  # one request per second
        # the burst's first 15 s are all late, then all on time; one lost at t=30
        met = None if t == 30 else not (10 <= t < 25)
        recs.append(Record(float(t), "x", met, ttft_ms=None if met is None else float(t),
                           e2e_ms=None if met is None else 2.0 * t,
                           error="lost" if met is None else None))
    samples = [{"t": 0.0, "active": 1, "ready": 1, "queued": 0},
               {"t": 12.0, "active": 4, "ready": 1, "queued": 50},
               {"t": 36.0, "active": 4, "ready": 4, "queued": 20},
               {"t": 55.0, "active": 2, "ready": 2, "queued": 0}]
    decisions = [{"t": 12.0, "action": "up", "from": 1, "to": 4},
                 {"t": 55.0, "action": "down", "from": 4, "to": 2}]
    m = policy_metrics(recs, samples, decisions, ph, cfg)
    assert m["requests"] == 60 and m["lost"] == 1
    assert m["goodput_burst"] == pytest.approx((40 - 15 - 1) / 40)
    assert m["goodput_overall"] == pytest.approx((60 - 15 - 1) / 60)
    # bins from 25 on: 25-30 all met, 30-35 4/5 (the lost one), 35-40 all: with a 10-s hold
    # the first bin that stays >= 90% is 35 (30-35 is 80%): 25 s after the burst began
    assert m["recovery_s"] == pytest.approx(25.0)
    assert m["min_bin_goodput_in_burst"] == 0.0
    assert m["replica_seconds"] == pytest.approx(12 * 1 + 43 * 4 + 5 * 2)
    assert m["ready_replica_seconds"] == pytest.approx(36 * 1 + 19 * 4 + 5 * 2)
    assert m["replica_seconds_burst"] == pytest.approx(2 * 1 + 38 * 4)
    assert m["peak_replicas"] == 4 and m["replicas_at_end"] == 2
    assert (m["scale_ups"], m["scale_downs"]) == (1, 1)
    assert m["first_scale_up_s"] == pytest.approx(2.0)
    assert m["first_scale_down_s"] == pytest.approx(45.0)
    assert m["enough_ready_s"] == pytest.approx(26.0)  # ceil(3.5) = 4 ready at t=36
    assert m["peak_backlog"] == 50 and m["backlog_cleared_s"] == pytest.approx(45.0)
    assert m["ttft_ms_p95"] == pytest.approx(float(np.percentile(
        [t for t in range(60) if t != 30], 95)))


# -- the load --------------------------------------------------------------------------------

def test_capacity_follows_the_emulator_timing_model() -> None:
    # prefill 50 ms; decode step at batch 2 = 20 + (30-20)/3 ms; 8 tokens shared by 2 slots
    step = (20 + 10 / 3) / 1000
    assert replica_capacity_rps(SLOW, 10, 8, 2) == pytest.approx(1 / (0.05 + 8 * step / 2))


def test_the_schedule_is_seeded_and_follows_the_phases() -> None:
    cfg = BurstConfig(before_s=20, burst_s=40, after_s=20, low_replicas=0.5, burst_replicas=4)
    ph = phases(cfg, capacity_rps=5.0)
    assert [p["rate_rps"] for p in ph] == [2.5, 20.0, 2.5]
    a, b = arrival_times(ph, seed=3), arrival_times(ph, seed=3)
    assert a == b and a != arrival_times(ph, seed=4)
    assert all(x < y for (x, _), (y, _) in itertools.pairwise(a))
    n = {name: sum(1 for _, p in a if p == name) for name in ("before", "burst", "after")}
    assert abs(n["burst"] - 800) < 4 * math.sqrt(800)  # Poisson, mean rate x duration
    assert abs(n["before"] - 50) < 4 * math.sqrt(50)
    assert all(p["start_s"] <= t < p["end_s"] for t, name in a for p in ph if p["name"] == name)
    assert arrival_times([{"name": "x", "start_s": 0, "end_s": 10, "rate_rps": 0.0}], 0) == []


def test_prefixes_are_distinct_and_of_the_requested_length() -> None:
    assert len(prefix_text(0, 400)) == 400 == len(prefix_text(12345, 400))
    assert prefix_text(1, 400) != prefix_text(2, 400)


# -- the emulated cold start -----------------------------------------------------------------

async def test_emulator_answers_503_until_its_cold_start_ends() -> None:
    runner, port = await start_emulator("127.0.0.1", 0, SLOW, "m", cold_start_s=0.8)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/health") as r:
                assert r.status == 503
            async with s.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as r:
                assert r.status == 503
                assert "starting" in (await r.json())["message"]
            await asyncio.sleep(1.0)
            async with s.get(url + "/health") as r:
                assert r.status == 200
            async with s.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}) as r:
                assert r.status == 200
    finally:
        await runner.cleanup()


async def test_emulator_without_cold_start_is_healthy_at_once() -> None:
    runner, port = await start_emulator("127.0.0.1", 0, SLOW, "m")
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/health") as r:
            assert r.status == 200
    finally:
        await runner.cleanup()


def test_emulate_command_takes_cold_start(tmp_path: Path) -> None:
    import time
    import urllib.error
    import urllib.request

    prof = tmp_path / "slow.json"
    prof.write_text(SLOW.model_dump_json())
    port = free_port("127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "cato_backend.cli", "emulate", "--port",
                             str(port), "--profile", str(prof), "--cold-start-s", "1.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    codes = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and 200 not in codes:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    codes.append((r.status, time.monotonic() - t0))
            except urllib.error.HTTPError as e:
                codes.append((e.code, time.monotonic() - t0))
            except OSError:
                pass  # not listening yet
            if codes and codes[-1][0] == 200:
                break
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    assert codes and codes[-1][0] == 200
    assert 503 in [c for c, _ in codes]  # answered, but not healthy, during the cold start
    assert codes[-1][1] >= 1.4


# -- end to end ------------------------------------------------------------------------------

def test_cli_rejects_bad_knobs_and_policies(tmp_path: Path) -> None:
    assert main(["burst", "--cato-knobs", '{"no_such_knob": 1}', "--out", str(tmp_path)]) == 2
    assert main(["burst", "--min-replicas", "3", "--max-replicas", "2",
                 "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        main(["burst", "--policies", "cato,knative", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())


def test_burst_end_to_end_both_policies(tmp_path: Path, capsys) -> None:
    prof = tmp_path / "slow.json"
    prof.write_text(SLOW.model_dump_json())
    out = tmp_path / "results"
    # Tiny: 1 s cold start, 1 + 6 + 3 s of load, knobs scaled down so both policies act.
    rc = main(["burst", "--profile", str(prof), "--out", str(out), "--name", "b",
               "--no-progress", "--before", "1", "--burst", "6", "--after", "3",
               "--cold-start", "1", "--max-replicas", "3", "--max-in-flight", "2",
               "--max-tokens", "8", "--prompt-chars", "40", "--burst-replicas", "2.5",
               "--bin", "1", "--recovery-hold", "2",
               "--cato-knobs", json.dumps({"window_s": 1, "max_exceeded_times": 1,
                                           "cooldown_s": 1, "idle_windows_before_scale_down": 2,
                                           "default_cold_start_s": 1}),
               "--ray-knobs", json.dumps({"upscale_delay_s": 1, "look_back_period_s": 2,
                                          "downscale_delay_s": 2}),
               "--drain-timeout", "30", "--timeout", "120"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "time until goodput recovers" in printed
    data = json.loads((out / "b.json").read_text())  # strict JSON: no NaN
    md = (out / "b.md").read_text()
    assert md.startswith("# cato-bench burst") and "|---|" in md and "EMULATED" in md
    assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["complete"] is True
    assert data["benchmark"] == "burst" and "EMULATED" in data["engine"]
    assert {"load_average_before", "load_average_after", "cpu_count"} <= data["environment"].keys()
    assert data["knobs"]["overridden"] == {
        "cato": sorted(["window_s", "max_exceeded_times", "cooldown_s",
                        "idle_windows_before_scale_down", "default_cold_start_s"]),
        "ray": ["downscale_delay_s", "look_back_period_s", "upscale_delay_s"]}
    assert data["knobs"]["ray"]["target_ongoing_requests"] == 2.0  # defaults recorded too
    assert set(data["results"]) == {"cato", "ray"}
    n = data["load"]["requests_per_policy"]
    assert n > 20
    for policy, r in data["results"].items():
        setup = data["setup"][policy]
        assert setup["backend_config"]["models"]["smollm2"]["autoscale"]["policy"] == policy
        assert setup["backend_config"]["models"]["smollm2"]["engine_args"] == [
            "--cold-start-s", "1"]
        assert setup["first_ready_after_s"] >= 1.0  # the emulated cold start was waited for
        assert r["requests"] == n and r["lost"] == 0, r["lost_examples"]
        assert 0 <= r["goodput_burst"] <= 1
        assert r["replica_seconds"] >= 10 * 1 - 1  # at least one replica all along
        assert r["peak_replicas"] >= 1
        assert r["samples"] and r["goodput_series"]
        assert setup["leftover_replicas_stopped"] == []  # the backend stopped its replicas
        for pid in setup["replica_pids"] + [setup["backend_pid"]]:
            assert not Path(f"/proc/{pid}").exists() or b"emulate" not in Path(
                f"/proc/{pid}/cmdline").read_bytes()
    # the same seeded schedule for both
    assert data["results"]["cato"]["requests"] == data["results"]["ray"]["requests"]
