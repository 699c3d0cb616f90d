"""The emulated engine: timing follows the profile, OpenAI shapes, validation, aborts."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import aiohttp
import pytest

from cato_backend.emulator import EmulatedEngine, EngineStopped, start_emulator
from cato_backend.profiles import DecodePoint, EngineProfile

MODEL = "emu-model"


def make_profile(**overrides: object) -> EngineProfile:
    fields: dict[str, object] = {
        "model": MODEL,
        "hardware": "test",
        "engine": "emulated",
        "measured_at": "2025-01-01",
        "command": "test",
        "max_model_len": 2048,
        "overhead_ms": 5.0,
        "prefill_ms_per_token": 0.05,
        "decode": [DecodePoint(batch=1, step_ms=10.0), DecodePoint(batch=8, step_ms=20.0)],
    }
    fields.update(overrides)
    return EngineProfile(**fields)


@pytest.fixture
async def emulator() -> AsyncIterator[str]:
    runner, port = await start_emulator("127.0.0.1", 0, make_profile(), MODEL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _timed(engine: EmulatedEngine, prompt_tokens: int, max_tokens: int) -> list[float]:
    """Arrival times of each token, relative to the submission."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    return [loop.time() - t0 async for _ in engine.generate(prompt_tokens, max_tokens)]


def _mean_gap(times: list[float]) -> float:
    return (times[-1] - times[0]) / (len(times) - 1)


# ------------------------------------------------------------------------- engine core


async def test_engine_ttft_and_gap_follow_profile() -> None:
    async with EmulatedEngine(make_profile()) as engine:
        times = await _timed(engine, prompt_tokens=400, max_tokens=20)
    assert len(times) == 20
    assert 0.025 * 0.5 <= times[0] <= 0.025 * 1.5 + 0.005  # 5 ms + 400 * 0.05 ms
    assert 0.010 * 0.5 <= _mean_gap(times) <= 0.010 * 1.5
    assert engine.stats()["completed"] == 1
    assert engine.stats()["tokens_generated"] == 20


async def test_engine_batch_of_8_decodes_slower_per_token() -> None:
    async with EmulatedEngine(make_profile()) as engine:
        alone = _mean_gap(await _timed(engine, 10, 15))
        together = await asyncio.gather(*(_timed(engine, 10, 15) for _ in range(8)))
    gap8 = sum(_mean_gap(t) for t in together) / 8
    assert gap8 > 1.5 * alone  # profile: 20 ms vs 10 ms per step
    assert 0.020 * 0.5 <= gap8 <= 0.020 * 1.5


async def test_engine_queues_fifo_beyond_max_batch() -> None:
    async with EmulatedEngine(make_profile(), max_batch=2) as engine:
        tasks = [asyncio.create_task(_timed(engine, 10, 5)) for _ in range(3)]
        await asyncio.sleep(0.002)
        assert engine.stats()["running"] == 2 and engine.stats()["waiting"] == 1
        first, second, third = await asyncio.gather(*tasks)
    # the third starts only when a slot frees, after the first two finished
    assert third[0] > max(first[-1], second[-1])
    assert engine.stats()["completed"] == 3


async def test_engine_abort_leaves_batch_at_once() -> None:
    async with EmulatedEngine(make_profile()) as engine:
        async with aclosing(engine.generate(10, 100)) as tokens:
            assert [await anext(tokens), await anext(tokens)] == [0, 1]
        stats = engine.stats()
    assert stats["aborted"] == 1 and stats["running"] == 0 and stats["completed"] == 0


async def test_engine_stop_ends_open_requests() -> None:
    engine = EmulatedEngine(make_profile())
    await engine.start()
    tokens = engine.generate(10, 1000)
    await anext(tokens)
    await engine.stop()
    with pytest.raises(EngineStopped):
        async for _ in tokens:
            pass


# ------------------------------------------------------------------------- HTTP


async def _sse_events(resp: aiohttp.ClientResponse) -> list[str]:
    body = (await resp.read()).decode()
    assert body.endswith("data: [DONE]\n\n")
    return [e.removeprefix("data: ") for e in body.split("\n\n") if e]


async def test_streaming_completion_has_openai_shape(emulator: str, session) -> None:
    body = {
        "model": MODEL,
        "prompt": "def f():",
        "max_tokens": 6,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with session.post(emulator + "/v1/completions", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["X-Cato-Emulated"] == "true"
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = await _sse_events(resp)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    tokens, usage = chunks[:-1], chunks[-1]
    assert len(tokens) == 6
    for c in tokens:
        assert c["object"] == "text_completion" and c["model"] == MODEL
        assert c["id"].startswith("cmpl-") and isinstance(c["created"], int)
    assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * 5 + ["length"]
    ast.parse("".join(c["choices"][0]["text"] for c in tokens))  # valid Python
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 2, "completion_tokens": 6, "total_tokens": 8}


async def test_streaming_chat_has_openai_shape(emulator: str, session) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    async with session.post(emulator + "/v1/chat/completions", json=body) as resp:
        events = await _sse_events(resp)
    chunks = [json.loads(e) for e in events[:-1]]
    assert len(chunks) == 4  # role chunk + 3 tokens, no usage unless asked
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    ast.parse("".join(c["choices"][0]["delta"]["content"] for c in chunks))


async def test_non_streaming_completion_and_chat(emulator: str, session) -> None:
    async with session.post(
        emulator + "/v1/completions", json={"prompt": "x" * 40, "max_tokens": 4}
    ) as resp:
        out = await resp.json()
    assert out["object"] == "text_completion"
    assert out["choices"][0]["text"].count("\n") == 4
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    chat = {"messages": [{"role": "user", "content": [{"type": "text", "text": "abcd"}]}]}
    async with session.post(emulator + "/v1/chat/completions", json=chat) as resp:
        out = await resp.json()
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["usage"]["prompt_tokens"] == 1 and out["usage"]["completion_tokens"] == 16


async def test_context_overflow_gets_vllm_error(emulator: str, session) -> None:
    body = {"prompt": "x" * 4000, "max_tokens": 1100}  # 1000 + 1100 > 2048
    async with session.post(emulator + "/v1/completions", json=body) as resp:
        assert resp.status == 400
        assert resp.headers["X-Cato-Emulated"] == "true"
        err = await resp.json()
    assert err["object"] == "error" and err["type"] == "BadRequestError" and err["code"] == 400
    assert err["message"].startswith(
        "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens"
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/completions", {"max_tokens": 5}, 400, "prompt"),
        ("/v1/completions", {"prompt": "a", "max_tokens": 0}, 400, "max_tokens"),
        ("/v1/completions", {"prompt": "a", "max_tokens": "5"}, 400, "max_tokens"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages"),
        ("/v1/completions", {"prompt": "a", "model": "other"}, 404, "does not exist"),
    ],
)
async def test_bad_requests_get_vllm_error_shape(
    emulator: str, session, path: str, body: dict, status: int, needle: str
) -> None:
    async with session.post(emulator + path, json=body) as resp:
        assert resp.status == status
        err = await resp.json()
    assert err["object"] == "error" and err["code"] == status and needle in err["message"]


async def test_body_that_is_not_json_gets_400(emulator: str, session) -> None:
    async with session.post(emulator + "/v1/completions", data=b"{nope") as resp:
        assert resp.status == 400
        assert (await resp.json())["object"] == "error"


async def test_models_health_and_stats_are_labelled(emulator: str, session) -> None:
    async with session.get(emulator + "/v1/models") as resp:
        assert resp.headers["X-Cato-Emulated"] == "true"
        card = (await resp.json())["data"][0]
    assert card["id"] == MODEL and card["owned_by"] == "cato-emulator"
    async with session.get(emulator + "/health") as resp:
        assert resp.status == 200 and resp.headers["X-Cato-Emulated"] == "true"
    async with session.get(emulator + "/emulator/stats") as resp:
        stats = await resp.json()
    assert stats["model"] == MODEL
    for key in ("received", "completed", "aborted", "running", "waiting", "tokens_generated"):
        assert stats[key] == 0


async def test_disconnect_before_first_token_aborts(session) -> None:
    slow = make_profile(overhead_ms=2000.0)  # the first token would take 2 s
    runner, port = await start_emulator("127.0.0.1", 0, slow, MODEL)
    try:
        url = f"http://127.0.0.1:{port}"
        body = {"prompt": "a", "max_tokens": 5, "stream": True}
        resp = await session.post(url + "/v1/completions", json=body)
        await asyncio.sleep(0.05)
        resp.close()  # the client goes away while the request is prefilling
        for _ in range(50):
            async with session.get(url + "/emulator/stats") as r:
                stats = await r.json()
            if stats["aborted"]:
                break
            await asyncio.sleep(0.01)
        assert stats["aborted"] == 1 and stats["running"] == 0 and stats["completed"] == 0
    finally:
        await runner.cleanup()


def test_run_emulator_serves_until_sigterm(tmp_path: Path) -> None:
    profile_file = tmp_path / "tiny.json"
    profile_file.write_text(make_profile().model_dump_json())
    code = (
        "from cato_backend.emulator import run_emulator; "
        f"run_emulator('127.0.0.1', 0, {str(profile_file)!r}, 'm', 4)"
    )
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("emulated engine (profile tiny) listening on http://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
