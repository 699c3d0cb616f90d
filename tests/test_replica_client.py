"""ReplicaClient against the emulator and against small misbehaving servers on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from cato_backend.emulator import start_emulator
from cato_backend.provisioner import free_port
from cato_backend.replica_client import EngineRequest, ReplicaClient, ReplicaError, StreamChunk
from tests.test_emulator import MODEL, make_profile

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def emulator() -> AsyncIterator[str]:
    runner, port = await start_emulator("127.0.0.1", 0, make_profile(), MODEL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve(handler: Handler, path: str = "/v1/completions") -> AsyncIterator[str]:
    """A throw-away server with one POST route, for engines that misbehave."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def completion(max_tokens: int = 5, prompt: str = "def f():") -> EngineRequest:
    return EngineRequest(model=MODEL, max_tokens=max_tokens, prompt=prompt)


async def collect(client: ReplicaClient, req: EngineRequest) -> list[StreamChunk]:
    async with aclosing(client.stream(req)) as chunks:
        return [c async for c in chunks]


async def failure(client: ReplicaClient, req: EngineRequest) -> ReplicaError:
    with pytest.raises(ReplicaError) as info:
        await collect(client, req)
    return info.value


async def stats(session: aiohttp.ClientSession, base: str) -> dict:
    async with session.get(base + "/emulator/stats") as resp:
        return await resp.json()


def sse(obj: object) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def token(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


async def start_sse(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


# ------------------------------------------------------------------------- against the emulator


async def test_streams_completion_tokens_and_usage(emulator: str, session) -> None:
    chunks = await collect(ReplicaClient(emulator, session), completion(max_tokens=5))
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["length"]
    merged = StreamChunk.merge(chunks)  # tokens read together arrive merged
    assert merged.text == "".join(f"x{i} = {i}\n" for i in range(5))
    assert (merged.pieces, merged.prompt_tokens, merged.completion_tokens) == (5, 2, 5)


async def test_streams_chat(emulator: str, session) -> None:
    req = EngineRequest(
        model=MODEL, max_tokens=3, messages=({"role": "user", "content": "hello"},), stop=("\n\n",)
    )
    chunks = await collect(ReplicaClient(emulator, session), req)
    assert "".join(c.text for c in chunks) == "x0 = 0\nx1 = 1\nx2 = 2\n"
    assert chunks[-1].completion_tokens == 3 and chunks[-1].prompt_tokens == 2


async def test_ttft_and_gap_follow_profile(emulator: str, session) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    times = [
        loop.time() - t0
        async for c in ReplicaClient(emulator, session).stream(completion(20, "x" * 1600))
        if c.text
    ]
    assert 0.025 * 0.5 <= times[0] <= 0.025 * 1.5 + 0.01  # 5 ms + 400 tokens * 0.05 ms
    gap = (times[-1] - times[0]) / 19
    assert 0.010 * 0.5 <= gap <= 0.010 * 1.5


async def test_eight_concurrent_streams_are_slower_per_token(emulator: str, session) -> None:
    client = ReplicaClient(emulator, session)
    loop = asyncio.get_running_loop()

    async def mean_gap() -> float:
        times = [loop.time() async for c in client.stream(completion(12)) if c.text]
        return (times[-1] - times[0]) / (len(times) - 1)

    alone = await mean_gap()
    together = await asyncio.gather(*(mean_gap() for _ in range(8)))
    assert sum(together) / 8 > 1.4 * alone  # profile: 20 ms vs 10 ms per step


async def test_context_overflow_is_http_400_with_engine_message(emulator: str, session) -> None:
    err = await failure(ReplicaClient(emulator, session), completion(1100, "x" * 4000))
    assert (err.kind, err.status, err.started) == ("http", 400, False)
    assert "maximum context length is 2048 tokens" in err.message


async def test_aclose_after_two_chunks_aborts_engine_request(emulator: str, session) -> None:
    async with aclosing(ReplicaClient(emulator, session).stream(completion(500))) as chunks:
        assert (await anext(chunks)).text and (await anext(chunks)).text
    for _ in range(100):
        s = await stats(session, emulator)
        if s["aborted"]:
            break
        await asyncio.sleep(0.01)
    assert (s["aborted"], s["running"], s["completed"]) == (1, 0, 0)
    assert s["tokens_generated"] < 50


async def test_cancelling_the_consumer_aborts_engine_request(emulator: str, session) -> None:
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in ReplicaClient(emulator, session).stream(completion(500)):
            got_one.set()

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        s = await stats(session, emulator)
        if s["aborted"]:
            break
        await asyncio.sleep(0.01)
    assert (s["aborted"], s["running"]) == (1, 0)


async def test_health_and_models(emulator: str, session) -> None:
    client = ReplicaClient(emulator, session)
    assert await client.health()
    assert await client.models() == [MODEL]


# ------------------------------------------------------------------------- failures


async def test_unreachable_port(session) -> None:
    client = ReplicaClient(f"http://127.0.0.1:{free_port()}", session)
    err = await failure(client, completion())
    assert (err.kind, err.started) == ("unreachable", False)
    assert not await client.health(timeout_s=0.5)
    with pytest.raises(ReplicaError) as info:
        await client.models()
    assert info.value.kind == "unreachable"


async def test_body_that_is_not_sse_is_protocol_error(session) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async with serve(garbage) as base:
        err = await failure(ReplicaClient(base, session), completion())
    assert (err.kind, err.started) == ("protocol", False)


async def test_malformed_json_event_is_protocol_error(session) -> None:
    async def bad_json(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        await resp.write(b"data: {not json\n\n")
        return resp

    async with serve(bad_json) as base:
        err = await failure(ReplicaClient(base, session), completion())
    assert err.kind == "protocol"


async def test_missing_fields_is_protocol_error(session) -> None:
    async def no_choices(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        await resp.write(sse({"id": "x"}) + b"data: [DONE]\n\n")
        return resp

    async with serve(no_choices) as base:
        err = await failure(ReplicaClient(base, session), completion())
    assert err.kind == "protocol"


async def test_openai_style_error_body_message(session) -> None:
    async def overloaded(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "overloaded, retry"}}, status=503)

    async with serve(overloaded) as base:
        err = await failure(ReplicaClient(base, session), completion())
    assert (err.kind, err.status, err.started) == ("http", 503, False)
    assert err.message.endswith("overloaded, retry")


async def test_sse_split_across_writes_with_comments_and_crlf(session) -> None:
    async def choppy(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        payload = (
            b": keep-alive\r\n\r\n"
            + sse(token("a")).replace(b"\n", b"\r\n")
            + b"event: message\n"
            + sse({"choices": [{"index": 0, "text": "", "finish_reason": None}]})  # nothing in it
            + sse(token("b", "stop"))
            + sse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}})
            + b"data: [DONE]\n\n"
        )
        for i in range(0, len(payload), 7):  # partial lines across network chunks
            await resp.write(payload[i : i + 7])
            await asyncio.sleep(0)
        return resp

    async with serve(choppy) as base:
        chunks = await collect(ReplicaClient(base, session), completion())
    # Events that arrive in one read are merged, so how many chunks come back depends on
    # timing; what they carry together does not.
    merged = StreamChunk.merge(chunks)
    assert (merged.text, merged.finish_reason, merged.prompt_tokens,
            merged.completion_tokens, merged.pieces) == ("ab", "stop", 7, 2, 2)
    assert chunks[0].text.startswith("a")


def test_merge_keeps_text_order_last_finish_and_usage() -> None:
    one = StreamChunk("a", None)
    assert StreamChunk.merge([one]) is one
    merged = StreamChunk.merge([one, StreamChunk("b", "stop"),
                                StreamChunk("", None, prompt_tokens=7, completion_tokens=2)])
    assert merged == StreamChunk("ab", "stop", 7, 2, pieces=2)


async def test_finish_without_done_is_accepted(session) -> None:
    async def no_done(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        await resp.write(sse(token("a")) + sse(token("b", "length")))
        return resp

    async with serve(no_done) as base:
        chunks = await collect(ReplicaClient(base, session), completion())
    assert "".join(c.text for c in chunks) == "ab"
    assert chunks[-1].finish_reason == "length"


async def test_stream_that_ends_early_is_protocol_error_after_start(session) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        await resp.write(sse(token("a")) + sse(token("b")))
        return resp  # a clean end of body, but no finish_reason and no [DONE]

    async with serve(cut) as base:
        err = await failure(ReplicaClient(base, session), completion())
    assert (err.kind, err.started) == ("protocol", True)


async def test_connection_closed_mid_stream(session) -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        await resp.write(sse(token("a")) + sse(token("b")))
        await asyncio.sleep(0.05)
        request.transport.close()
        return resp

    async with serve(hang_up) as base:
        err = await failure(ReplicaClient(base, session), completion())
    assert err.kind in ("protocol", "timeout") and err.started


async def test_stall_mid_stream_times_out(session) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        await resp.write(sse(token("a")) + sse(token("b")))
        await asyncio.sleep(5)
        return resp

    async with serve(stall) as base:
        client = ReplicaClient(base, session, idle_timeout_s=0.2)
        err = await failure(client, completion())
    assert (err.kind, err.started) == ("timeout", True)


async def test_no_first_token_in_time_times_out(session) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response()

    async with serve(slow) as base:
        client = ReplicaClient(base, session, first_token_timeout_s=0.2)
        err = await failure(client, completion())
    assert (err.kind, err.started) == ("timeout", False)


async def test_request_body_and_auth_header(session) -> None:
    seen: dict = {}

    async def record(request: web.Request) -> web.StreamResponse:
        seen.update(body=await request.json(), auth=request.headers.get("Authorization"))
        resp = await start_sse(request)
        await resp.write(
            b"data: "
            + json.dumps(
                {"choices": [{"delta": {"content": "ok"}, "finish_reason": "stop"}]}
            ).encode()
            + b"\n\ndata: [DONE]\n\n"
        )
        return resp

    req = EngineRequest(
        model="m",
        max_tokens=3,
        messages=({"role": "user", "content": "q"},),
        extra={"top_p": 0.9, "stream": False},
    )
    async with serve(record, "/v1/chat/completions") as base:
        chunks = await collect(ReplicaClient(base, session, api_key="sekret"), req)
    assert chunks == [StreamChunk("ok", "stop")]
    assert seen["auth"] == "Bearer sekret"
    assert seen["body"]["top_p"] == 0.9 and seen["body"]["stream"] is True
    assert seen["body"]["stream_options"] == {"include_usage": True}
    assert seen["body"]["messages"] == [{"role": "user", "content": "q"}]


def test_engine_request_needs_exactly_one_of_prompt_and_messages() -> None:
    with pytest.raises(ValueError):
        EngineRequest(model="m", max_tokens=1)
    with pytest.raises(ValueError):
        EngineRequest(model="m", max_tokens=1, prompt="a", messages=({},))


async def test_finished_streams_reuse_one_connection() -> None:
    """A stream that ended cleanly returns its connection to the pool, even when the end of
    the HTTP body comes a moment after `[DONE]` (as from a loaded engine): a new TCP
    connect per request would sit on every request's time to first token."""
    async def late_eof(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        await resp.write(sse(token("a", "stop")) + b"data: [DONE]\n\n")
        await asyncio.sleep(0.05)  # the chunked body's terminator follows later
        return resp

    created = 0

    async def on_create(*_args) -> None:
        nonlocal created
        created += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    async with serve(late_eof) as base, aiohttp.ClientSession(trace_configs=[trace]) as s:
        client = ReplicaClient(base, s)
        for _ in range(3):
            assert [c.text for c in await collect(client, completion())] == ["a"]
            await asyncio.sleep(0.1)  # the body's end arrives; the connection is free again
    assert created == 1
