"""`cato-bench lsp-overhead` runs end to end (a few requests) and writes its files."""

from __future__ import annotations

import json

from cato_backend.bench.cli import main


def test_lsp_overhead_bench_writes_results(tmp_path, capsys):
    rc = main(["lsp-overhead", "--requests", "5", "--warmup", "1", "--out", str(tmp_path),
               "--name", "lsp", "--no-progress"])
    assert rc == 0
    payload = json.loads((tmp_path / "lsp.json").read_text())
    r = payload["results_ms"]
    assert r["overhead_ms"]["n"] == 5 and r["cache_hit_ms"]["n"] == 5
    assert payload["engine"].startswith("EMULATED")
    assert payload["environment"]["load_average_before"] is not None
    assert len(payload["raw_ms"]["overhead_ms"]) == 5
    assert "overhead" in (tmp_path / "lsp.md").read_text()
    assert "| path |" in capsys.readouterr().out


def test_lsp_overhead_bench_rejects_bad_sizes(tmp_path):
    assert main(["lsp-overhead", "--requests", "0", "--out", str(tmp_path)]) == 2
