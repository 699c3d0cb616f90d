"""Emulated engine: an OpenAI-compatible server whose timing follows an `EngineProfile`.

A load-testing tool (like llm-d's inference simulator), not a model: every response carries
`X-Cato-Emulated: true` and `/v1/models` reports `owned_by: cato-emulator`, so results made
with it are always labelled as emulated.

Timing model (continuous batching, as in vLLM's scheduler):
- up to `max_batch` sequences run together; later arrivals wait FIFO;
- each scheduler step admits waiting requests and prefills them (overhead + per-token
  prefill, summed over the new arrivals), then emits one token to every running sequence;
  a step lasts the new arrivals' prefill plus `profile.decode_step_ms(decoding batch)`;
- a request's first token comes at the end of the step that prefilled it.
Deliberate simplifications: the output is always exactly `max_tokens` tokens (like vLLM's
`ignore_eos`; `stop` is ignored, finish_reason is "length"), and each token is one short
line of valid Python (`x12 = 12\\n`) so any streamed output parses as Python.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .profiles import EngineProfile, load_profile
from .tokens import estimate_tokens

# When the event loop falls behind (a blocked loop, a busy machine), catch up by at most
# this much so sleep overshoot does not accumulate, yet a long stall does not burst tokens.
_MAX_LAG_S = 0.1


class EngineStopped(Exception):
    """The engine shut down while the request was still running."""


@dataclass(eq=False)
class _Sequence:
    prompt_tokens: int
    max_tokens: int
    produced: int = 0
    prefilled: bool = False
    finished: bool = False
    tokens: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)


class EmulatedEngine:
    """The engine core: a scheduler loop over a running batch, pure asyncio, no HTTP."""

    def __init__(self, profile: EngineProfile, *, max_batch: int = 256, name: str | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.profile = profile
        self.max_batch = max_batch
        self.name = name or f"{profile.model}@{profile.hardware}"
        self._waiting: deque[_Sequence] = deque()
        self._running: dict[_Sequence, None] = {}  # insertion-ordered set, O(1) removal
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.received = self.completed = self.aborted = self.tokens_generated = 0

    async def start(self) -> None:
        if self._task is None:
            self._stopped = False
            self._task = asyncio.create_task(self._run(), name=f"emulated-engine-{self.name}")

    async def stop(self) -> None:
        """Stop the scheduler; requests still queued or running end with `EngineStopped`."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for seq in [*self._waiting, *self._running]:
            seq.tokens.put_nowait(None)  # wakes the consumer; it sees finished=False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def stats(self) -> dict[str, Any]:
        return {
            "profile": self.name,
            "received": self.received,
            "completed": self.completed,
            "aborted": self.aborted,
            "running": len(self._running),
            "waiting": len(self._waiting),
            "tokens_generated": self.tokens_generated,
            "max_batch": self.max_batch,
        }

    async def generate(self, prompt_tokens: int, max_tokens: int) -> AsyncIterator[int]:
        """Yield token indices 0..max_tokens-1 at the profile's pace. Closing the iterator
        early (or cancelling its consumer) aborts the request and frees its batch slot."""
        if self._stopped or self._task is None:
            raise EngineStopped("engine is not running")
        seq = _Sequence(prompt_tokens=prompt_tokens, max_tokens=max_tokens)
        self.received += 1
        self._waiting.append(seq)
        self._wake.set()
        try:
            while (index := await seq.tokens.get()) is not None:
                yield index
            if not seq.finished:
                raise EngineStopped("engine stopped")
        finally:
            if not seq.finished:
                self._abort(seq)

    def _abort(self, seq: _Sequence) -> None:
        seq.finished = True
        self.aborted += 1
        self._running.pop(seq, None)
        try:
            self._waiting.remove(seq)
        except ValueError:
            pass

    def _prefill_ms(self, seq: _Sequence) -> float:
        return self.profile.overhead_ms + self.profile.prefill_ms_per_token * seq.prompt_tokens

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t = loop.time()  # the scheduled end of the previous step
        while True:
            if not self._running and not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                t = loop.time()
            new: list[_Sequence] = []
            while self._waiting and len(self._running) < self.max_batch:
                seq = self._waiting.popleft()
                self._running[seq] = None
                new.append(seq)
            decoding = [s for s in self._running if s.prefilled]
            step_ms = sum(self._prefill_ms(s) for s in new)
            if decoding:
                step_ms += self.profile.decode_step_ms(len(decoding))
            # Absolute schedule: each step ends step_ms after the previous one's scheduled end.
            t = max(t, loop.time() - _MAX_LAG_S) + step_ms / 1000.0
            await asyncio.sleep(max(0.0, t - loop.time()))
            for seq in decoding + new:
                if seq not in self._running:  # aborted during the step
                    continue
                seq.prefilled = True
                seq.tokens.put_nowait(seq.produced)
                seq.produced += 1
                self.tokens_generated += 1
                if seq.produced >= seq.max_tokens:
                    seq.finished = True
                    del self._running[seq]
                    seq.tokens.put_nowait(None)
                    self.completed += 1


def token_text(index: int) -> str:
    """The emulated text of output token `index`: one line of valid Python."""
    return f"x{index} = {index}\n"


# ---------------------------------------------------------------------------- HTTP layer


class _StreamOptions(BaseModel):
    include_usage: bool = False


class _RequestBody(BaseModel):
    # Other OpenAI fields (temperature, top_p, stop, seed, ...) are accepted and ignored.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int = Field(default=16, ge=1, strict=True)
    stream: bool = Field(default=False, strict=True)
    stream_options: _StreamOptions | None = None


class _CompletionBody(_RequestBody):
    prompt: str


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class _ChatBody(_RequestBody):
    messages: list[_ChatMessage] = Field(min_length=1)


ENGINE_KEY = web.AppKey("engine", EmulatedEngine)
MODEL_KEY = web.AppKey("model_name", str)
READY_AT_KEY = web.AppKey("ready_at", float)  # loop time when the emulated cold start ends


def _starting(request: web.Request) -> bool:
    return asyncio.get_running_loop().time() < request.app[READY_AT_KEY]


def _error(status: int, message: str, kind: str) -> web.Response:
    """An error in vLLM's body shape."""
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.json_response(body, status=status)


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


async def _label(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["X-Cato-Emulated"] = "true"


async def _generate(request: web.Request, chat: bool) -> web.StreamResponse:
    engine, model = request.app[ENGINE_KEY], request.app[MODEL_KEY]
    if _starting(request):
        return _error(503, "engine is starting (emulated cold start)", "ServiceUnavailableError")
    try:
        raw = await request.json()
        body = _ChatBody.model_validate(raw) if chat else _CompletionBody.model_validate(raw)
    except json.JSONDecodeError as e:
        return _error(400, f"request body is not valid JSON: {e}", "BadRequestError")
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        return _error(400, f"{where}: {err['msg']}", "BadRequestError")
    if body.model is not None and body.model != model:
        return _error(404, f"The model `{body.model}` does not exist.", "NotFoundError")
    if isinstance(body, _ChatBody):
        prompt_text = "".join(m.text() for m in body.messages)
    else:
        prompt_text = body.prompt
    prompt_tokens = estimate_tokens(prompt_text)
    requested = prompt_tokens + body.max_tokens
    limit = engine.profile.max_model_len
    if requested > limit:
        return _error(
            400,
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{requested} tokens ({prompt_tokens} in the messages, {body.max_tokens} in the "
            "completion). Please reduce the length of the messages or completion.",
            "BadRequestError",
        )
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": body.max_tokens,
        "total_tokens": requested,
    }
    head = {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "created": int(time.time()),
        "model": model,
    }
    tokens = engine.generate(prompt_tokens, body.max_tokens)
    if not body.stream:
        try:
            async with aclosing(tokens):
                text = "".join([token_text(i) async for i in tokens])
        except EngineStopped:
            return _error(503, "engine is shutting down", "ServiceUnavailableError")
        if chat:
            choice: dict[str, Any] = {"message": {"role": "assistant", "content": text}}
        else:
            choice = {"text": text, "logprobs": None}
        choice.update(index=0, finish_reason="length", stop_reason=None)
        obj = "chat.completion" if chat else "text_completion"
        return web.json_response({**head, "object": obj, "choices": [choice], "usage": usage})

    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text: str | None, finish: str | None, role: bool = False) -> bytes:
        if chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return _sse({**head, "object": obj, "choices": [choice]})

    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        await resp.prepare(request)
        if chat:  # like vLLM: the role comes first, before any token
            await resp.write(chunk("", None, role=True))
        async with aclosing(tokens):
            async for i in tokens:
                last = i + 1 == body.max_tokens
                await resp.write(chunk(token_text(i), "length" if last else None))
        if body.stream_options and body.stream_options.include_usage:
            await resp.write(_sse({**head, "object": obj, "choices": [], "usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
    except EngineStopped:
        pass  # the stream ends without [DONE]: the client sees an engine that went away
    except ConnectionResetError:
        pass  # client disconnected; closing `tokens` above already aborted the request
    return resp


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=False)


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, chat=True)


async def _models(request: web.Request) -> web.Response:
    engine, model = request.app[ENGINE_KEY], request.app[MODEL_KEY]
    card = {
        "id": model,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "cato-emulator",
        "root": model,
        "parent": None,
        "max_model_len": engine.profile.max_model_len,
    }
    return web.json_response({"object": "list", "data": [card]})


async def _health(request: web.Request) -> web.Response:
    return web.Response(status=503 if _starting(request) else 200)


async def _stats(request: web.Request) -> web.Response:
    return web.json_response({"model": request.app[MODEL_KEY], **request.app[ENGINE_KEY].stats()})


def build_app(engine: EmulatedEngine, model_name: str, cold_start_s: float = 0.0
              ) -> web.Application:
    """The HTTP app; it starts the engine on start-up and stops it on shutdown. With
    `cold_start_s` > 0 it emulates a replica loading its model: for that many seconds after
    start-up `/health` answers 503 and generation requests are refused with 503, as a vLLM
    server is not ready while it loads (the backend waits for a healthy `/health`)."""
    if cold_start_s < 0:
        raise ValueError("cold_start_s cannot be negative")
    app = web.Application()
    app[ENGINE_KEY] = engine
    app[MODEL_KEY] = model_name
    app[READY_AT_KEY] = float("-inf")
    app.add_routes(
        [
            web.post("/v1/completions", _completions),
            web.post("/v1/chat/completions", _chat),
            web.get("/v1/models", _models),
            web.get("/health", _health),
            web.get("/emulator/stats", _stats),
        ]
    )
    app.on_response_prepare.append(_label)

    async def start(_: web.Application) -> None:
        app[READY_AT_KEY] = asyncio.get_running_loop().time() + cold_start_s
        await engine.start()

    async def stop(_: web.Application) -> None:
        await engine.stop()  # ends open streams so shutdown does not wait for them

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return app


async def start_emulator(
    host: str,
    port: int,
    profile: EngineProfile,
    model_name: str,
    max_batch: int = 256,
    *,
    profile_name: str | None = None,
    cold_start_s: float = 0.0,
) -> tuple[web.AppRunner, int]:
    """Serve an emulated engine; port 0 picks a free port. Stop it with `runner.cleanup()`.
    `cold_start_s`: see `build_app` (0: ready at once)."""
    engine = EmulatedEngine(profile, max_batch=max_batch, name=profile_name)
    # handler_cancellation: a client disconnect cancels its handler even while it waits for
    # a token, so the request leaves the batch at once (how vLLM aborts).
    runner = web.AppRunner(
        build_app(engine, model_name, cold_start_s),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=5.0,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


def run_emulator(
    host: str,
    port: int,
    profile_path: str | Path,
    model_name: str | None = None,
    max_batch: int = 256,
    cold_start_s: float = 0.0,
) -> None:
    """Blocking entry point (`cato-backend emulate`): serve until SIGINT/SIGTERM. With
    `cold_start_s` > 0, `/health` answers 503 for that long after start (an emulated cold
    start: the model loading)."""
    profile = load_profile(profile_path)
    name = Path(profile_path).stem

    async def serve() -> None:
        runner, actual_port = await start_emulator(
            host, port, profile, model_name or profile.model, max_batch, profile_name=name,
            cold_start_s=cold_start_s,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        ready = f"; healthy after a {cold_start_s:g}s emulated cold start" if cold_start_s else ""
        print(
            f"emulated engine (profile {name}) listening on http://{host}:{actual_port}{ready}",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


__all__ = [
    "EmulatedEngine",
    "EngineStopped",
    "build_app",
    "run_emulator",
    "start_emulator",
    "token_text",
]
