"""`cato-bench simulate` writes its results; `--speed` its speed table."""

from __future__ import annotations

import json

from cato_backend.bench.cli import main


def test_simulate_compares_policies_on_the_same_requests(tmp_path):
    rc = main(["simulate", "--router", "cato,round_robin", "--scaling", "none", "--replicas",
               "2", "--rate", "6", "--duration", "30", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    payload = json.loads((tmp_path / "simulate.json").read_text())
    runs = payload["runs"]
    assert [r["label"] for r in runs] == ["cato / none", "round_robin / none"]
    assert runs[0]["summary"]["tasks"] == runs[1]["summary"]["tasks"] > 0
    for r in runs:
        s = r["summary"]
        assert set(s["per_kind"]) == {"completion", "generation", "translation", "summarization"}
        assert s["replica_seconds"] > 0 and 0 < s["utilization"] <= 1
        assert s["replicas_over_time"]["points"][0] == [0.0, 0, 2, 0]
    md = (tmp_path / "simulate.md").read_text()
    assert "SIMULATED" in md and "completion: p95 TTFT ms" in md


def test_simulate_replays_a_trace(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(json.dumps({"t": i * 0.5, "kind": "summarization",
                                           "prompt_tokens": 200, "max_tokens": 32})
                               for i in range(10)) + "\n")
    rc = main(["simulate", "--trace", str(trace), "--scaling", "cato", "--max-replicas", "2",
               "--out", str(tmp_path), "--name", "tr", "--no-progress"])
    assert rc == 0
    s = json.loads((tmp_path / "tr.json").read_text())["runs"][0]["summary"]
    assert s["tasks"] == 10 and s["unfinished"] == 0


def test_speed_writes_both_scenarios(tmp_path):
    rc = main(["simulate", "--speed", "--speed-scale", "0.001", "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 0
    payload = json.loads((tmp_path / "sim_speed.json").read_text())
    assert [s["replicas"] for s in payload["scenarios"]] == [100, 10_000]
    assert all(s["tasks"] > 0 and s["wall_s"] > 0 for s in payload["scenarios"])
    assert (tmp_path / "sim_speed.md").read_text().startswith("# cato-bench simulate --speed")
