"""A backend that is down, comes back, answers errors, or hangs: the editor gets empty
answers quickly, ONE message when the backend goes away, one when it is back."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from .harness import BackendProcess, free_port, lsp, rng

URI = "file:///work/app.py"
TEXT = "def area(w, h):\n    return w * h\n\n"


async def test_backend_down_then_back(tmp_path):
    port = free_port()
    (tmp_path / "b").mkdir()
    backend = BackendProcess(tmp_path / "b", port)
    try:
        async with lsp(backend.url, tmp_path / "cache") as s:
            s.open(URI, TEXT)
            await s.wait_for(lambda: any(x["state"] == "unreachable" for x in s.statuses),
                             what="an unreachable status")
            t0 = time.monotonic()
            for i in range(5):  # keystrokes while it is down: fast empty answers
                assert await s.inline(URI, 1, 10 + i % 3, invoked=False) is None
            assert time.monotonic() - t0 < 2
            with pytest.raises(JsonRpcException, match="unreachable"):
                await s.command("cato.summarize", URI, rng(0, 0, 2, 0))
            warnings = [m for m in s.client.messages if m.type == types.MessageType.Warning]
            assert len(warnings) == 1 and "unreachable" in warnings[0].message
            assert len(s.client.messages) == 1

            await asyncio.to_thread(backend.start)
            await s.wait_for(lambda: s.statuses[-1]["state"] == "ok", timeout_s=15,
                             what="an ok status after the backend came back")
            assert len(s.client.messages) == 2  # and one "reachable again"
            assert "reachable again" in s.client.messages[1].message
            result = await s.inline(URI, 1, 16)
            assert result is not None and result.items
    finally:
        backend.stop()


async def fake_backend(handler) -> tuple[web.AppRunner, str, dict]:
    seen: dict = {"requests": 0, "disconnected": 0, "auth": [], "bodies": []}

    async def tasks(request: web.Request):
        seen["requests"] += 1
        seen["auth"].append(request.headers.get("Authorization"))
        seen["bodies"].append(await request.json())
        try:
            return await handler(request)
        except asyncio.CancelledError:
            seen["disconnected"] += 1
            raise

    async def status(request):
        return web.json_response({"models": {}, "kinds": {}})

    async def healthz(request):
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/tasks", tasks)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}", seen


async def test_backend_errors_give_empty_completions_and_clear_command_errors(tmp_path):
    async def broken(request):
        return web.json_response({"error": {"message": "engine exploded"}}, status=503)

    runner, url, seen = await fake_backend(broken)
    try:
        async with lsp(url, tmp_path) as s:
            s.open(URI, TEXT)
            assert await s.inline(URI, 1, 16) is None
            with pytest.raises(JsonRpcException, match="engine exploded"):
                await s.command("cato.summarize", URI, rng(0, 0, 2, 0))
            assert seen["requests"] == 2
            last = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")])
            assert "engine exploded" in last[-1]["lastTask"]["error"]
            assert not s.client.messages  # an error is not an outage: no popup
    finally:
        await runner.cleanup()


async def test_a_hanging_backend_is_cut_off_by_the_timeout_and_the_call_closed(tmp_path):
    async def hang(request):
        await asyncio.sleep(60)

    runner, url, seen = await fake_backend(hang)
    try:
        async with lsp(url, tmp_path, settings={"timeouts": {"completionMs": 300}}) as s:
            s.open(URI, TEXT)
            t0 = time.monotonic()
            assert await s.inline(URI, 1, 16) is None
            assert time.monotonic() - t0 < 3
            await s.wait_for(lambda: seen["disconnected"] == 1,
                             what="the fake backend seeing the client go away")
    finally:
        await runner.cleanup()


async def test_garbage_from_the_backend_is_an_empty_answer(tmp_path):
    async def garbage(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: {not json\n\n")
        return resp

    runner, url, _ = await fake_backend(garbage)
    try:
        async with lsp(url, tmp_path) as s:
            s.open(URI, TEXT)
            assert await s.inline(URI, 1, 16) is None
            logs = " ".join(m.message for m in s.client.log_messages)
            assert "malformed event" in logs
    finally:
        await runner.cleanup()


def done_event(met: bool) -> bytes:
    import json

    return b"data: " + json.dumps({
        "type": "done", "request_id": "r", "kind": "completion", "text": "x = 1",
        "ttft_ms": 900.0, "e2e_ms": 950.0, "replica": "fake", "nodes": [],
        "sla": {"metric": "ttft", "target_ms": 500.0, "met": met}}).encode() + b"\n\n"


async def test_missed_slas_make_the_status_degraded_without_a_popup(tmp_path):
    async def slow(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(done_event(met=False))
        return resp

    runner, url, _ = await fake_backend(slow)
    try:
        async with lsp(url, tmp_path, settings={"health": {"missThreshold": 2},
                                                "cache": {"enabled": False}}) as s:
            s.open(URI, TEXT)
            assert await s.inline(URI, 1, 16)
            assert s.statuses[-1]["state"] == "ok"
            assert await s.inline(URI, 1, 16)
            await s.wait_for(lambda: s.statuses[-1]["state"] == "degraded",
                             what="a degraded status")
            assert s.statuses[-1]["lastTask"]["met"] is False
            assert not s.client.messages
    finally:
        await runner.cleanup()


async def test_token_is_sent_as_a_bearer_header(tmp_path):
    async def ok(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(done_event(met=True))
        return resp

    runner, url, seen = await fake_backend(ok)
    try:
        async with lsp(url, tmp_path, args=("--token", "s3cret")) as s:
            s.open(URI, TEXT)
            assert await s.inline(URI, 1, 16)
        assert seen["auth"] == ["Bearer s3cret"]
        body = seen["bodies"][0]
        assert body["kind"] == "completion" and body["sla_ms"] == 500
        assert body["prefix"].endswith("return w * h") and body["language"] == "python"
    finally:
        await runner.cleanup()
