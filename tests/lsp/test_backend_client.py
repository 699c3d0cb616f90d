"""backend_client.py against small in-process HTTP servers: the event stream, errors, and
cancellation closing the connection."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from cato_lsp.backend_client import (
    BackendClient,
    BackendError,
    BackendTimeout,
    BackendUnreachable,
    models_by_kind,
)

from .harness import free_port

DONE = (b'data: {"type": "done", "text": "ok", "ttft_ms": 1.5, "e2e_ms": 3.0, '
        b'"sla": {"metric": "ttft", "target_ms": 500, "met": true}, "replica": "r0"}')


async def serve(handler):
    seen = {"closed": 0}

    async def wrapped(request):
        try:
            return await handler(request)
        except asyncio.CancelledError:
            seen["closed"] += 1
            raise

    app = web.Application()
    app.router.add_post("/v1/tasks", wrapped)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", seen


def stream(*chunks: bytes, hang: bool = False):
    async def handler(request):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for c in chunks:
            await resp.write(c)
        if hang:
            await asyncio.sleep(60)
        return resp
    return handler


async def test_tokens_are_streamed_and_done_is_the_result():
    runner, url, _ = await serve(stream(
        b'data: {"type": "accepted"}\n\n', b'data: {"type":"token","text":"o"}\n\n',
        b'data: {"type": "token", "text": "k"}\n\n', DONE + b"\n\n"))
    client = BackendClient(url)
    try:
        tokens: list[str] = []
        result = await client.run_task({"kind": "completion"}, 5, on_token=tokens.append)
        assert tokens == ["o", "k"]
        assert (result.text, result.ttft_ms, result.sla_met, result.replica) == (
            "ok", 1.5, True, "r0")
        assert result.client_ms > 0
        # Without a consumer the token events are skipped, the result is the same.
        assert (await client.run_task({"kind": "completion"}, 5)).text == "ok"
    finally:
        await client.close()
        await runner.cleanup()


async def test_a_last_event_without_its_blank_line_still_counts():
    runner, url, _ = await serve(stream(DONE + b"\n"))
    client = BackendClient(url)
    try:
        assert (await client.run_task({}, 5)).text == "ok"
    finally:
        await client.close()
        await runner.cleanup()


@pytest.mark.parametrize("handler,match", [
    (stream(b'data: {"type": "error", "message": "no replica"}\n\n'), "no replica"),
    (stream(b'data: {"type": "accepted"}\n\n'), "ended without a result"),
    (lambda r: _json_error(400), "invalid task: prefix: Field required"),
    (lambda r: _json_error(401), "check the `token` setting"),
])
async def test_backend_errors_are_clear(handler, match):
    runner, url, _ = await serve(handler)
    client = BackendClient(url)
    try:
        with pytest.raises(BackendError, match=match):
            await client.run_task({}, 5)
    finally:
        await client.close()
        await runner.cleanup()


async def _json_error(status: int):
    return web.json_response({"error": {"message": "invalid task", "fields": [
        {"field": "prefix", "problem": "Field required"}]}}, status=status)


async def test_nothing_listening_is_unreachable():
    client = BackendClient(f"http://127.0.0.1:{free_port()}", connect_timeout_s=1)
    try:
        with pytest.raises(BackendUnreachable):
            await client.run_task({}, 5)
        with pytest.raises(BackendUnreachable):
            await client.healthz()
    finally:
        await client.close()


async def test_cancelling_closes_the_connection_so_the_backend_aborts():
    runner, url, seen = await serve(stream(b'data: {"type": "accepted"}\n\n', hang=True))
    client = BackendClient(url)
    try:
        call = asyncio.ensure_future(client.run_task({}, 30))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        for _ in range(100):
            if seen["closed"]:
                break
            await asyncio.sleep(0.02)
        assert seen["closed"] == 1
        with pytest.raises(BackendTimeout):
            await client.run_task({}, 0.2)  # a timeout closes it too
    finally:
        await client.close()
        await runner.cleanup()


def test_models_by_kind_from_status():
    status = {"models": {"a": {"served_name": "m-a"}}, "kinds": {
        "completion": {"model": "a"}, "translation": {"model": "missing"}}}
    assert models_by_kind(status) == {"completion": "m-a"}
