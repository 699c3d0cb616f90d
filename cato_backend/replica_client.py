"""Async client for one OpenAI-compatible engine (vLLM's API server, or our emulator).

Always streams (SSE), so the caller sees the first token as soon as the engine makes it and
can abort by closing the stream: the HTTP response is then closed, not returned to the
pool, so the engine sees the disconnect and aborts the request (that is how vLLM aborts).
Consume with `contextlib.aclosing` so an abandoned stream is closed at once, not at GC:

    async with aclosing(client.stream(req)) as chunks:
        async for chunk in chunks: ...
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson

ErrorKind = Literal["unreachable", "http", "protocol", "timeout"]


@dataclass(frozen=True)
class EngineRequest:
    model: str
    max_tokens: int
    prompt: str | None = None  # -> POST /v1/completions
    messages: tuple[dict, ...] | None = None  # -> POST /v1/chat/completions
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # other OpenAI fields, verbatim

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.messages is not None else "/v1/completions"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.extra)
        body.update(model=self.model, max_tokens=self.max_tokens, temperature=self.temperature)
        if self.messages is not None:
            body["messages"] = list(self.messages)
        else:
            body["prompt"] = self.prompt
        if self.stop:
            body["stop"] = list(self.stop)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return body


@dataclass(frozen=True)
class StreamChunk:
    text: str  # delta text (may be "")
    finish_reason: str | None
    prompt_tokens: int | None = None  # from the usage chunk when the engine sends one
    completion_tokens: int | None = None
    pieces: int = 1  # engine events merged into this chunk (see `merge`)

    @staticmethod
    def merge(chunks: list[StreamChunk]) -> StreamChunk:
        """The events of one network read as one chunk: text joined, the last finish reason
        and usage kept."""
        if len(chunks) == 1:
            return chunks[0]
        def last(attr: str):
            return next((v for c in reversed(chunks) if (v := getattr(c, attr)) is not None),
                        None)

        return StreamChunk("".join(c.text for c in chunks), last("finish_reason"),
                           last("prompt_tokens"), last("completion_tokens"),
                           sum(c.pieces for c in chunks if c.text))


class ReplicaError(Exception):
    """A failed engine call. `started` tells whether any token had reached the caller, i.e.
    whether retrying on another replica would repeat output the user has already seen."""

    def __init__(
        self, kind: ErrorKind, message: str, *, status: int | None = None, started: bool = False
    ) -> None:
        super().__init__(f"{kind}{f' {status}' if status else ''}: {message}")
        self.kind = kind
        self.status = status
        self.message = message
        self.started = started


def _error_message(body: bytes) -> str:
    """The message of an engine's error body: vLLM's `{"object":"error","message":..}`,
    OpenAI's `{"error":{"message":..}}`, FastAPI's `{"detail":..}`, else the raw text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return text[:500] or "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
        for key in ("message", "detail"):
            if key in obj:
                return str(obj[key])
        if isinstance(err, str):
            return err
    return text[:500]


class _SSEDecoder:
    """Incremental server-sent-events decoder: bytes in, complete events' data out (bytes,
    as orjson takes them). Lines may be split across network reads; comments and non-data
    fields are skipped."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []  # data lines of the event being read (general path)

    def feed(self, block: bytes) -> list[bytes]:
        """Feed the next read; an empty block means EOF (flushes an unterminated event)."""
        if not block:
            lines, self._buffer = [self._buffer, b""], b""
            return self._lines(lines)
        buf = self._buffer + block if self._buffer else block
        if self._data or b"\r" in buf:
            *lines, self._buffer = buf.split(b"\n")
            return self._lines(lines)
        # Fast path, what vLLM and the emulator send: LF line ends and one `data: ` line per
        # event, so an event is what lies between blank lines; the rest goes line by line.
        *events, self._buffer = buf.split(b"\n\n")
        out = []
        for event in events:
            if event.startswith(b"data: ") and b"\n" not in event:
                out.append(event[6:])
            else:
                out += self._lines(event.split(b"\n") + [b""])
        return out

    def _lines(self, lines: list[bytes]) -> list[bytes]:
        events = []
        for raw in lines:
            line = raw.rstrip(b"\r")
            if line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            elif not line and self._data:  # a blank line ends the event
                events.append(b"\n".join(self._data))
                self._data = []
        return events


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except ValueError:
        pass
    text = data.decode("utf-8", "replace")  # bad UTF-8 is replaced, not fatal
    try:
        return orjson.loads(text)
    except ValueError as e:
        raise ReplicaError("protocol", f"malformed JSON in stream: {text[:200]!r}") from e


def _parse_event(data: bytes, chat: bool) -> tuple[str, Any, Any, Any] | None:
    """One SSE event's JSON payload -> (text, finish_reason, prompt_tokens,
    completion_tokens); None for a chunk with nothing in it."""
    obj = _loads(data)
    if not isinstance(obj, dict):
        raise ReplicaError("protocol", f"stream event is not an object: {_show(data)}")
    if obj.get("object") == "error" or "error" in obj:  # an engine error sent mid-stream
        err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
        code = err.get("code")
        raise ReplicaError(
            "http",
            _error_message(json.dumps(obj).encode()),
            status=code if isinstance(code, int) else 500,
        )
    try:
        choices = obj["choices"]
        usage = obj.get("usage")
        if usage:
            prompt_tokens = usage.get("prompt_tokens")
            completion_tokens = usage.get("completion_tokens")
        else:
            prompt_tokens = completion_tokens = None
        if choices:
            choice = choices[0]
            text = (choice["delta"].get("content") if chat else choice["text"]) or ""
            finish = choice.get("finish_reason")
        else:
            text, finish = "", None
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise ReplicaError("protocol", f"unexpected chunk shape: {_show(data)}") from e
    if not isinstance(text, str):
        raise ReplicaError("protocol", f"chunk text is not a string: {_show(data)}")
    if not text and finish is None and prompt_tokens is None and completion_tokens is None:
        return None  # e.g. the role-only first chunk of a chat stream
    return text, finish, prompt_tokens, completion_tokens


def _json_bytes(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)  # several times faster than json.dumps
    except TypeError:  # what orjson refuses (an integer beyond 64 bits) json may still take
        return json.dumps(body).encode()


def _show(data: bytes) -> str:
    return repr(data[:200].decode("utf-8", "replace"))


def _parse_read(events: list[bytes], chat: bool) -> tuple[StreamChunk | None, bool]:
    """The events of one network read -> one chunk, as StreamChunk.merge would make of
    them (None when none carries anything), and whether `[DONE]` came (what follows it is
    ignored). Built directly: no chunk object per event on the per-token path."""
    texts: list[str] = []
    finish = prompt_tokens = completion_tokens = None
    parsed = 0
    done = False
    for data in events:
        if data.strip() == b"[DONE]":
            done = True
            break
        fields = _parse_event(data, chat)
        if fields is None:
            continue
        parsed += 1
        text, f, p, c = fields
        if text:
            texts.append(text)
        if f is not None:
            finish = f
        if p is not None:
            prompt_tokens = p
        if c is not None:
            completion_tokens = c
    if not parsed:
        return None, done
    pieces = len(texts) if parsed > 1 else 1
    return StreamChunk("".join(texts), finish, prompt_tokens, completion_tokens, pieces), done


class _Stall:
    """A stream's "no data for idle_s between chunks" bound as one timer for the whole
    stream, not a timeout context and timer per read: a read only notes when it began to
    wait, and the timer re-arms itself until a wait has really lasted idle_s; then the read
    fails with TimeoutError. Only the wait counts, not the time the consumer takes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, content: aiohttp.StreamReader,
                 idle_s: float) -> None:
        self.waiting_since: float | None = None
        self._loop = loop
        self._content = content
        self._idle_s = idle_s
        self._timer = loop.call_later(idle_s, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        since = self.waiting_since
        if since is not None and now - since >= self._idle_s - 0.001:  # timers may fire early
            self._content.set_exception(TimeoutError())
            return
        self._timer = self._loop.call_at((now if since is None else since) + self._idle_s,
                                         self._check)

    def cancel(self) -> None:
        self._timer.cancel()


class ReplicaClient:
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        connect_timeout_s: float = 5.0,
        first_token_timeout_s: float = 60.0,
        idle_timeout_s: float = 30.0,
        relay_interval_s: float = 0.0,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._connect_timeout_s = connect_timeout_s
        self._first_token_timeout_s = first_token_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._relay_interval_s = relay_interval_s
        self._finishing: set[asyncio.Task] = set()  # streams read to their end after [DONE]
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._post_headers = {**self._headers, "Content-Type": "application/json"}
        # Only the socket connect is bounded by aiohttp; the stream's own deadlines are ours
        # (the session's default 300 s total would cut long streams).
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout_s, sock_read=None
        )

    def __repr__(self) -> str:
        return f"ReplicaClient({self.base_url!r})"

    async def stream(self, req: EngineRequest) -> AsyncIterator[StreamChunk]:
        """Stream one request. Raises ReplicaError; closing the iterator aborts the request.

        Yields one chunk per network read: the events that arrived together are merged
        (StreamChunk.merge). Unloaded, that is one token per chunk; when the backend falls
        behind, tokens that queued up are relayed together, so the per-token cost (parse,
        re-encode, socket write) shrinks exactly when the event loop is busiest.

        Until the first token, everything (connect, queueing, prefill) must fit in
        first_token_timeout_s; after it, no gap between reads may exceed idle_timeout_s.
        Chunks with neither text, finish_reason nor usage (a chat role chunk) are skipped.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._first_token_timeout_s
        started = False
        chat = req.messages is not None

        def fail(kind: ErrorKind, message: str, status: int | None = None) -> ReplicaError:
            return ReplicaError(kind, f"{self.base_url}: {message}", status=status, started=started)

        resp: aiohttp.ClientResponse | None = None
        stall: _Stall | None = None  # after the first token
        clean = False  # True once the stream ended properly; then the connection is reusable
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    resp = await self._session.post(
                        self.base_url + req.path,
                        data=_json_bytes(req.body()),
                        headers=self._post_headers,
                        timeout=self._stream_timeout,
                    )
                    if resp.status != 200:
                        raise fail("http", _error_message(await resp.read()), resp.status)
                ctype = resp.headers.get("Content-Type", "")
                if not ctype.startswith("text/event-stream"):
                    raise fail("protocol", f"expected an event stream, got {ctype or 'no type'!r}")

                events = _SSEDecoder()
                finished = False
                last_yield = 0.0
                while True:
                    if started and self._relay_interval_s:
                        # After the first token, relay at most once per interval: tokens
                        # that come faster wait in the socket buffer and go out together.
                        wait = last_yield + self._relay_interval_s - loop.time()
                        if wait > 0:
                            await asyncio.sleep(wait)
                    try:
                        if stall is not None:
                            stall.waiting_since = loop.time()
                            block = await resp.content.readany()
                            stall.waiting_since = None
                        else:
                            async with asyncio.timeout_at(deadline):
                                block = await resp.content.readany()
                    except TimeoutError:
                        limit = self._idle_timeout_s if started else self._first_token_timeout_s
                        what = "between chunks" if started else "before the first token"
                        raise fail("timeout", f"no data for {limit:g}s {what}") from None
                    chunk, clean = _parse_read(events.feed(block), chat)
                    if chunk is not None:
                        finished = finished or chunk.finish_reason is not None
                        if not started and chunk.text:
                            started = True
                            stall = _Stall(loop, resp.content, self._idle_timeout_s)
                        last_yield = loop.time()
                        yield chunk
                    if clean:
                        return
                    if not block:  # EOF
                        if finished:  # some servers omit [DONE] after the finish_reason
                            clean = True
                            return
                        raise fail("protocol", "stream ended before the request finished")
            except ReplicaError as e:
                e.started = started
                raise
            except aiohttp.ClientConnectorError as e:
                raise fail("unreachable", f"cannot connect: {e}") from e
            except aiohttp.ConnectionTimeoutError as e:
                raise fail("unreachable", f"connect timeout ({self._connect_timeout_s:g}s)") from e
            except TimeoutError as e:  # the first-token deadline passed before the headers
                raise fail("timeout", f"no response within {self._first_token_timeout_s:g}s") from e
            except aiohttp.ServerDisconnectedError as e:
                if resp is None:  # the engine hung up before answering: safe to retry
                    raise fail("unreachable", f"server disconnected: {e}") from e
                raise fail("protocol", f"connection closed mid-stream: {e}") from e
            except (aiohttp.ClientError, OSError) as e:
                raise fail("protocol", f"{type(e).__name__}: {e}") from e
        finally:
            # On abort (aclose, cancellation) or error, close the connection so the engine
            # sees the disconnect; only a cleanly finished stream goes back to the pool.
            if stall is not None:
                stall.cancel()
            if resp is not None:
                if not clean:
                    resp.close()
                elif resp.content.at_eof():
                    resp.release()
                else:  # [DONE] came before the body's end; don't make the caller wait for it
                    self._finish_in_background(resp)

    def _finish_in_background(self, resp: aiohttp.ClientResponse) -> None:
        """Read a finished stream to the end of its body, then return the connection to the
        pool (released before that, aiohttp would close it, and the next request would pay
        for a new connect on its time to first token)."""
        async def finish() -> None:
            try:
                async with asyncio.timeout(self._idle_timeout_s):
                    while await resp.content.readany():
                        pass
            except (TimeoutError, aiohttp.ClientError, OSError):
                resp.close()
            else:
                resp.release()

        task = asyncio.get_running_loop().create_task(finish())
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def health(self, timeout_s: float = 2.0) -> bool:
        """GET /health answered 200 within timeout_s."""
        try:
            async with self._session.get(
                self.base_url + "/health",
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def models(self) -> list[str]:
        """GET /v1/models -> the served model ids."""
        timeout = aiohttp.ClientTimeout(
            total=self._connect_timeout_s + self._idle_timeout_s,
            sock_connect=self._connect_timeout_s,
        )
        try:
            async with self._session.get(
                self.base_url + "/v1/models", headers=self._headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise ReplicaError("http", _error_message(body), status=resp.status)
                try:
                    return [str(m["id"]) for m in json.loads(body)["data"]]
                except (ValueError, KeyError, TypeError) as e:
                    raise ReplicaError("protocol", f"bad /v1/models body: {body[:200]!r}") from e
        except aiohttp.ClientConnectorError as e:
            raise ReplicaError("unreachable", f"{self.base_url}: cannot connect: {e}") from e
        except TimeoutError as e:
            raise ReplicaError("timeout", f"{self.base_url}: /v1/models timed out") from e
        except (aiohttp.ClientError, OSError) as e:
            raise ReplicaError("protocol", f"{self.base_url}: {type(e).__name__}: {e}") from e
