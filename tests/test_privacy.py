"""Privacy: no prompt or completion text in the backend's logs by default; `log_prompts` is
opt-in and says so loudly at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp

from cato_backend.backend import Backend
from cato_backend.server import start_server

from .conftest import RunningBackend, emulated_config, sse_events, stop_backend

MARK = "Zq7SecretMarker"  # in every input field: found in a log = a leak

BODIES = [
    {"kind": "completion", "language": "python", "prefix": f"def {MARK}_pre():\n    ",
     "suffix": f"\n# {MARK}_suf\n"},
    {"kind": "generation", "language": "python", "instruction": f"write {MARK}_instr",
     "context": f"import {MARK}_ctx\n"},
    {"kind": "translation", "source_language": "javascript", "target_language": "python",
     "code": f"function {MARK}_js(a) {{ return a; }}\n"},
    {"kind": "summarization", "language": "python", "code": f"def {MARK}_sum(): pass\n"},
]


async def _start(config) -> tuple[RunningBackend, list[str]]:
    lines: list[str] = []
    backend = Backend(config, log=lines.append)
    runner, port = await start_server(backend, "127.0.0.1", 0)
    rb = RunningBackend(backend, runner, port)
    await rb.wait_ready(1)
    return rb, lines


async def _run_everything(rb: RunningBackend) -> list[str]:
    """Every kind, both OpenAI endpoints, a cancelled task and a failing one; returns the
    completion texts the client got."""
    texts = []
    async with aiohttp.ClientSession() as s:
        for body in BODIES:
            done = (await sse_events(s, rb.url + "/v1/tasks", body))[-1]
            assert done["type"] == "done", done
            texts.append(done["text"])
        async with s.post(rb.url + "/v1/completions",
                          json={"prompt": f"{MARK}_oai", "max_tokens": 6}) as r:
            texts.append((await r.json())["choices"][0]["text"])
        async with s.post(rb.url + "/v1/chat/completions",
                          json={"messages": [{"role": "user", "content": f"{MARK}_chat"}],
                                "max_tokens": 6}) as r:
            texts.append((await r.json())["choices"][0]["message"]["content"])
        # a client that goes away mid-stream
        resp = await s.post(rb.url + "/v1/tasks", json={**BODIES[3], "max_tokens": 500})
        async for raw in resp.content:
            if b'"token"' in raw:
                break
        resp.close()
        # bad input echoes nothing of the prompt into the logs either
        async with s.post(rb.url + "/v1/tasks", json={**BODIES[0], "surprise": MARK}) as r:
            assert r.status == 400
    assert all(t.strip() for t in texts)
    return texts


async def test_no_prompt_or_completion_text_in_logs_by_default(fast_profile_path, caplog,
                                                               monkeypatch):
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's included, at its most verbose
    rb, lines = await _start(emulated_config(fast_profile_path, replicas=1))
    try:
        texts = await _run_everything(rb)

        def boom(*args, **kwargs):  # a bug inside a task: its traceback is logged
            raise RuntimeError("boom")

        monkeypatch.setattr("cato_backend.steps.summarization_messages", boom)
        async with aiohttp.ClientSession() as s:
            events = await sse_events(s, rb.url + "/v1/tasks", BODIES[3])
        assert "internal error" in events[-1]["message"]
        replica_logs = [Path(r.log_path).read_text(errors="replace")
                        for r in rb.backend.handles.values() if r.log_path]
    finally:
        await stop_backend(rb)
    logged = "\n".join(lines) + "\n" + caplog.text + "\n".join(replica_logs)
    assert lines and "RuntimeError" in caplog.text  # the logs were captured
    assert MARK not in logged
    for text in texts:
        assert text.strip() not in logged
    for line in ("x1 = 1", "x2 = 2"):  # lines of the emulated engine's completions
        assert line not in logged


async def test_log_prompts_is_opt_in_and_loud(fast_profile_path):
    rb, lines = await _start(emulated_config(fast_profile_path, replicas=1, log_prompts=True))
    try:
        assert any("WARNING" in ln and "log_prompts is ON" in ln for ln in lines[:3])
        async with aiohttp.ClientSession() as s:
            done = (await sse_events(s, rb.url + "/v1/tasks", BODIES[0]))[-1]
    finally:
        await stop_backend(rb)
    logged = [ln for ln in lines if ln.startswith("[log-prompts]")]
    assert len(logged) == 1
    assert f"{MARK}_pre" in logged[0] and done["request_id"] in logged[0]
