"""The per-token and per-request fast paths give what the general code would."""

from __future__ import annotations

import asyncio
import json
import random
from contextlib import aclosing

import aiohttp
import orjson
from aiohttp import web

from cato_backend.replica_client import ReplicaClient, _parse_event, _parse_read, _SSEDecoder
from cato_backend.server import _loads
from tests.test_replica_client import completion, serve, sse, start_sse, token


def _reference_events(stream: bytes) -> list[bytes]:
    """SSE data per event, line by line as the spec reads it."""
    events, data = [], []
    for raw in stream.split(b"\n"):
        line = raw.rstrip(b"\r")
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif not line and data:
            events.append(b"\n".join(data))
            data = []
    return events


def test_sse_decoder_fast_and_general_paths_agree_for_any_split() -> None:
    stream = (sse(token("a")) + b": comment\n\n" + sse(token("b")) + b"data:{\"x\":1}\n\n"
              + b"event: message\ndata: two\ndata: lines\n\n" + b"\n\n\n" + sse(token("c"))
              + b"data: [DONE]\n\n")
    expected = _reference_events(stream)
    rng = random.Random(0)
    for _ in range(300):
        decoder, got, i = _SSEDecoder(), [], 0
        while i < len(stream):
            n = rng.randint(1, 40)
            got += decoder.feed(stream[i:i + n])
            i += n
        got += decoder.feed(b"")
        assert got == expected
    crlf = stream.replace(b"\n", b"\r\n")  # the general path
    assert _SSEDecoder().feed(crlf) + _SSEDecoder().feed(b"") == expected


def test_parse_read_merges_like_stream_chunk_merge() -> None:
    events = [orjson.dumps(token("a")), orjson.dumps(token("")), orjson.dumps(token("b", "stop")),
              orjson.dumps({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
              b"[DONE]", orjson.dumps(token("after done"))]
    chunk, done = _parse_read(events, chat=False)
    assert done
    assert (chunk.text, chunk.finish_reason, chunk.prompt_tokens, chunk.completion_tokens,
            chunk.pieces) == ("ab", "stop", 7, 2, 2)
    assert _parse_read([orjson.dumps(token(""))], chat=False) == (None, False)
    assert _parse_event("é".encode("latin-1").join([b'{"choices":[{"text":"', b'"}]}']),
                        chat=False)[0] == "\ufffd"  # bad UTF-8 replaced, as before


def test_json_body_loads_as_json_does() -> None:
    for text in ['{"a": NaN}', '{"a": 123456789012345678901234567890}', '{"a":1,"a":2}',
                 '"\\ud800"', '[0.1000000000000000055511151231257827, -0.0, 1e308]',
                 '{"prefix": "é\\n", "sla_ms": 400, "x": [true, null]}']:
        assert repr(_loads(text)) == repr(json.loads(text))


async def test_slow_consumer_is_not_an_engine_stall() -> None:
    """The idle bound counts only the time spent waiting for the engine."""
    async def steady(request: web.Request) -> web.StreamResponse:
        resp = await start_sse(request)
        for i in range(4):
            await resp.write(sse(token(str(i))))
            await asyncio.sleep(0.05)
        await resp.write(sse(token("", "length")) + b"data: [DONE]\n\n")
        return resp

    async with serve(steady) as base, aiohttp.ClientSession() as session:
        client = ReplicaClient(base, session, idle_timeout_s=0.2)
        texts = []
        async with aclosing(client.stream(completion())) as chunks:
            async for chunk in chunks:
                texts.append(chunk.text)
                await asyncio.sleep(0.3)  # longer than idle_timeout_s, between reads
    assert "".join(texts) == "0123"
