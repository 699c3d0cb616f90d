"""Trace files: round trip, the committed example, and file:line errors for bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cato_backend.schemas import TASK_REQUEST
from cato_backend.sim import workloads as W
from cato_backend.sim.requests import Request

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


GOOD = '{"t": 0.5, "kind": "completion", "prompt_tokens": 100, "max_tokens": 48}'


def test_trace_round_trip(tmp_path):
    reqs = W.poisson(W.paper_rates(0.5), 60, seed=3, sla_ms={"summarization": 5000.0},
                     tenants=("team-a", "team-b"))
    path = tmp_path / "t.jsonl"
    assert W.write_trace(reqs, path) == len(reqs)
    back = W.load_trace(path)
    assert back == reqs
    assert [r.body for r in back] == [r.body for r in reqs]


def test_the_committed_example_trace_loads_with_valid_bodies():
    reqs = W.load_trace(ROOT / "bench/traces/example.jsonl")
    assert 50 <= len(reqs) <= 300
    assert {r.kind for r in reqs} == set(W.KINDS)
    assert all(0 <= r.t < 300 for r in reqs)
    for r in reqs:
        assert TASK_REQUEST.validate_python(r.body).kind == r.kind


def test_minimal_lines_take_defaults_and_other_fields_are_ignored(tmp_path):
    path = _write(tmp_path / "t.jsonl",
                  '{"t": 2, "kind": "translation", "prompt_tokens": 300, "max_tokens": 512, '
                  '"model": "x", "note": [1, 2]}',
                  "",
                  GOOD)
    a, b = W.load_trace(path)  # sorted by t: the file's order does not matter
    assert a == Request(0.5, "completion", 100, 48, 48)
    assert b == Request(2.0, "translation", 300, 512, 512)
    half = W.load_trace(path, output_ratio=0.5)
    assert [r.output_tokens for r in half] == [24, 256]


@pytest.mark.parametrize("line, message", [
    ('{"t": 1, "kind": ', "bad JSON"),
    ('[1, 2]', "expected a JSON object"),
    ('{"t": 1, "kind": "completion", "prompt_tokens": 5}', "missing field max_tokens"),
    ('{"kind": "completion", "max_tokens": 5}', "missing fields t, prompt_tokens"),
    ('{"t": -1, "kind": "completion", "prompt_tokens": 5, "max_tokens": 5}', "t must be >= 0"),
    ('{"t": "soon", "kind": "completion", "prompt_tokens": 5, "max_tokens": 5}', "t must be"),
    ('{"t": 1, "kind": "chat", "prompt_tokens": 5, "max_tokens": 5}', "unknown kind 'chat'"),
    ('{"t": 1, "kind": "completion", "prompt_tokens": 0, "max_tokens": 5}', "prompt_tokens"),
    ('{"t": 1, "kind": "completion", "prompt_tokens": 5, "max_tokens": 2.5}', "max_tokens"),
    ('{"t": 1, "kind": "completion", "prompt_tokens": 5, "max_tokens": 5, "output_tokens": 9}',
     "exceeds max_tokens"),
    ('{"t": 1, "kind": "completion", "prompt_tokens": 5, "max_tokens": 5, "sla_ms": 0}', "sla_ms"),
    ('{"t": 1, "kind": "completion", "prompt_tokens": 5, "max_tokens": 5, "tenant": 3}', "tenant"),
    (GOOD[:-1] + ', "body": {"kind": "summarization", "code": "x", "language": "python"}}',
     "body kind"),
    (GOOD[:-1] + ', "body": {"kind": "completion", "prefix": "x"}}',
     "invalid body: completion.language"),
])
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "bad.jsonl", GOOD, "", line)
    with pytest.raises(W.TraceError) as e:
        W.load_trace(path)
    assert str(e.value).startswith(f"{path}:3: ")
    assert message in str(e.value)


def test_written_lines_are_plain_json(tmp_path):
    path = tmp_path / "t.jsonl"
    W.write_trace([Request(1.25, "summarization", 80, 128, 40, tenant="x")], path)
    assert json.loads(path.read_text()) == {"t": 1.25, "kind": "summarization",
                                            "prompt_tokens": 80, "max_tokens": 128,
                                            "output_tokens": 40, "tenant": "x"}
