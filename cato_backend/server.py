"""The HTTP API (DESIGN.md, "Contracts"): thin aiohttp handlers over the Backend.

POST /v1/tasks answers a server-sent event stream whose last event is `done` or `error`.
A client that goes away cancels its task (the handler is cancelled, which closes the engine
stream); DELETE /v1/tasks/{request_id} does the same for a client that stays (only the
tenant that started the task can; for any other it does not exist: 404).

Auth (config `auth:`, `serve --auth FILE`): every path but `auth.public_paths` needs
`Authorization: Bearer <token>`; without a valid one the answer is 401 with a JSON error and
`WWW-Authenticate: Bearer`. The token's tenant (auth.py) is then held to its limits
(tenants.py): rate and in-flight cap, answered with 429 and `Retry-After`. Task streams per
remote address are capped with or without auth. What a task streams back is bounded
(`_StreamGuard`).

Privacy: no prompt or completion text is logged, unless `log_prompts` is on (opt-in, loud).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from .auth import ANONYMOUS, TokenStore
from .backend import Backend
from .graph import NodeKind, graph_for
from .kinds import TaskKind
from .orchestrator import Task, TaskError
from .replica_client import EngineRequest
from .schemas import TASK_REQUEST, DoneEvent
from .tenants import Admission, Rejection

BACKEND = web.AppKey("backend", Backend)
ACTIVE = web.AppKey("active", dict)  # (tenant, request_id) -> _Running
STORE = web.AppKey("token_store", object)  # TokenStore, or None when auth is off
ADMISSION = web.AppKey("admission", Admission)
TENANT = web.RequestKey("tenant", str)  # the authenticated tenant (or ANONYMOUS)

# A token event carries at least one engine token, and a token is rarely longer than a few
# dozen characters: a task may stream at most (LLM nodes x max_tokens) events and 64 times
# that many characters (plus some slack), under the hard caps in `limits`.
MAX_CHARS_PER_TOKEN = 64
LLM_NODES = {k: max(1, sum(n.kind is NodeKind.LLM for n in graph_for(k).nodes)) for k in TaskKind}

OPENAI_PASSTHROUGH = ("temperature", "top_p", "stop", "seed", "presence_penalty",
                      "frequency_penalty", "n", "logit_bias", "user")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"message": message, **extra}}, status=status)


def _validation_errors(e: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in e.errors(include_url=False)]


_LONG_NUMBER = re.compile(r"\d{20}")  # orjson reads integers past 64 bits as floats


def _loads(text: str) -> Any:
    """json.loads, faster: orjson where it gives the same answer. What orjson refuses
    (NaN, deep nesting, lone surrogates, bad JSON) json decides on, or explains."""
    if _LONG_NUMBER.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json(loads=_loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:  # not UTF-8 is not JSON either
        raise web.HTTPBadRequest(text=json.dumps({"error": {"message": f"body is not JSON: {e}"}}),
                                 content_type="application/json") from None
    except RecursionError:  # e.g. thousands of nested arrays, well within max_body_bytes
        raise web.HTTPBadRequest(text=json.dumps({"error": {"message": "body is not JSON we "
                                                            "accept: nested too deeply"}}),
                                 content_type="application/json") from None


def _unauthorized(message: str, invalid: bool) -> web.Response:
    challenge = 'Bearer realm="cato"' + (', error="invalid_token"' if invalid else "")
    resp = _error(401, message)
    resp.headers["WWW-Authenticate"] = challenge
    return resp


def _too_many(rejection: Rejection) -> web.Response:
    resp = _error(429, rejection.message, reason=rejection.reason,
                  retry_after_s=rejection.retry_after_s)
    resp.headers["Retry-After"] = str(rejection.retry_after_s)
    return resp


@web.middleware
async def authenticate(request: web.Request, handler):
    """Find the request's tenant; without auth everyone is ANONYMOUS."""
    store: TokenStore | None = request.app[STORE]  # type: ignore[assignment]
    request[TENANT] = ANONYMOUS
    if store is None:
        return await handler(request)
    backend = request.app[BACKEND]
    if request.path in backend.config.auth.public_paths:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        backend.metrics.reject(ANONYMOUS, "unauthorized")
        return _unauthorized("authentication required: send `Authorization: Bearer <token>` "
                             "(cato-backend token new --tenant NAME --file AUTH_FILE makes one)",
                             invalid=False)
    store.maybe_reload()
    tenant = store.tenant_of(token)
    if tenant is None:
        backend.metrics.reject(ANONYMOUS, "unauthorized")
        return _unauthorized("invalid bearer token", invalid=True)
    request[TENANT] = tenant
    return await handler(request)


@web.middleware
async def errors_as_json(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"body too large: limit is {request.app[BACKEND].config.limits.max_body_bytes} bytes")
    except web.HTTPException as e:
        if e.content_type == "application/json":
            raise
        return _error(e.status, e.reason)


class _SSE:
    """Writes `data: <json>` events to a prepared streaming response."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                                "Cache-Control": "no-cache"})

    async def send(self, event: dict[str, Any]) -> None:
        if not self.resp.prepared:
            await self.resp.prepare(self.request)
        await self.resp.write(b"data: " + orjson.dumps(event) + b"\n\n")

    async def end(self, event: dict[str, Any]) -> None:
        """The last event, sent together with the end of the body (one send, not two)."""
        if not self.resp.prepared:
            await self.resp.prepare(self.request)
        await self.resp.write_eof(b"data: " + orjson.dumps(event) + b"\n\n")


class _StreamGuard:
    """Relays a task's events, counting its token events and their characters; past the
    task's bound the stream is cut: TaskError (the orchestrator closes the engine stream,
    which aborts the engine request) and the client gets an error event."""

    def __init__(self, task: Task, backend: Backend, emit) -> None:
        limits = backend.config.limits
        nodes = 1 if task.passthrough is not None else LLM_NODES[task.kind]
        self.max_events = min(limits.max_stream_events, nodes * task.max_tokens + 8)
        self.max_chars = min(limits.max_stream_chars,
                             nodes * task.max_tokens * MAX_CHARS_PER_TOKEN + 1024)
        self.events = self.chars = 0
        self.emit = emit

    async def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") == "token":
            self.events += 1
            self.chars += len(event.get("text") or "")
            if self.events > self.max_events or self.chars > self.max_chars:
                what = (f"{self.max_events} token events" if self.events > self.max_events
                        else f"{self.max_chars} characters")
                raise TaskError(f"stream cut: the engine streamed more than {what}, the "
                                "bound for this task's max_tokens", 502)
        await self.emit(event)


def _log_prompt(backend: Backend, task: Task, done: DoneEvent) -> None:
    """Only with `log_prompts` on (opt-in, announced at start-up)."""
    if task.passthrough is not None:
        req = task.passthrough
        inputs: Any = {"prompt": req.prompt} if req.prompt is not None else {
            "messages": list(req.messages or ())}
    else:
        inputs = task.inputs
    backend.log(f"[log-prompts] task {task.request_id} tenant {task.tenant} "
                f"{task.kind.value}: inputs {orjson.dumps(inputs).decode()} -> output "
                f"{orjson.dumps(done.text).decode()}")


class _Running:
    """A task in ACTIVE. It runs in its request's handler (a child task would cost a trip
    round the event loop before the engine request goes out); DELETE cancels that handler,
    marked so that `_serve` answers "cancelled" instead of treating it as the client gone."""

    __slots__ = ("handler", "deleted")

    def __init__(self, handler: asyncio.Task) -> None:
        self.handler = handler
        self.deleted = False

    def cancel(self) -> None:
        if not self.deleted:
            self.deleted = True
            self.handler.cancel()


async def _serve(request: web.Request, task: Task, emit) -> DoneEvent | None:
    """Run a task in this handler; record its outcome. None when cancelled by DELETE."""
    backend = request.app[BACKEND]
    active = request.app[ACTIVE]
    key = (task.tenant, task.request_id)  # tenants do not see each other's request ids
    if key in active:
        raise TaskError(f"request_id {task.request_id!r} is already running", 409)
    me = asyncio.current_task()
    assert me is not None
    running = active[key] = _Running(me)
    kind, tenant = task.kind.value, task.tenant
    try:
        done = await backend.orchestrator.run(task, _StreamGuard(task, backend, emit))
    except asyncio.CancelledError:
        backend.metrics.record(kind, "cancelled", tenant=tenant)
        if not running.deleted or me.cancelling() > 1:  # the client went away
            raise
        me.uncancel()
        return None  # DELETE /v1/tasks/{id}
    except ConnectionError:
        backend.metrics.record(kind, "cancelled", tenant=tenant)  # client gone mid-write
        raise
    except TaskError:
        backend.metrics.record(kind, "error", e2e_s=backend.clock.now() - task.arrival,
                               tenant=tenant)
        raise
    except Exception as e:  # a bug: still end the stream with an error event, keep serving
        logging.getLogger("cato_backend").exception("task %s failed", task.request_id)
        backend.metrics.record(kind, "error", e2e_s=backend.clock.now() - task.arrival,
                               tenant=tenant)
        raise TaskError(f"internal error: {type(e).__name__}", 500) from e
    finally:
        active.pop(key, None)
    backend.metrics.record(kind, "met" if done.sla.met else "violated",
                           None if done.ttft_ms is None else done.ttft_ms / 1000,
                           done.e2e_ms / 1000, tenant=tenant)
    if backend.config.log_prompts:
        _log_prompt(backend, task, done)
    return done


def _check_rate(request: web.Request) -> web.Response | None:
    """A task request arrives: 429 when its tenant is over its rate (before the body is
    even read)."""
    backend = request.app[BACKEND]
    tenant = request[TENANT]
    rejection = request.app[ADMISSION].check_rate(tenant, backend.clock.now())
    if rejection is None:
        return None
    backend.metrics.reject(tenant, rejection.reason)
    return _too_many(rejection)


async def _admitted(request: web.Request, task: Task,
                    respond: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Answer a valid task with `respond()` if its tenant's in-flight cap and its client's
    stream cap admit it (429 if not), holding its place until the answer is done."""
    task.tenant = request[TENANT]
    ticket = request.app[ADMISSION].acquire(task.tenant, request.remote)
    if isinstance(ticket, Rejection):
        request.app[BACKEND].metrics.reject(task.tenant, ticket.reason)
        return _too_many(ticket)
    try:
        return await respond()
    finally:
        ticket.release()


async def post_task(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    if (limited := _check_rate(request)) is not None:
        return limited
    body = await _json_body(request)
    try:
        req = TASK_REQUEST.validate_python(body)
    except ValidationError as e:
        return _error(400, "invalid task", fields=_validation_errors(e))
    inputs = req.model_dump(exclude={"kind", "sla_ms", "max_tokens", "request_id"})
    try:
        task = backend.orchestrator.new_task(TaskKind(req.kind), inputs, req.sla_ms,
                                             req.max_tokens, req.request_id)
    except TaskError as e:
        return _error(e.status, str(e))
    return await _admitted(request, task, lambda: _stream_task(request, task))


async def _stream_task(request: web.Request, task: Task) -> web.StreamResponse:
    sse = _SSE(request)
    try:
        done = await _serve(request, task, sse.send)
    except TaskError as e:
        if not sse.resp.prepared:
            return _error(e.status, str(e))
        await sse.end({"type": "error", "message": str(e), "request_id": task.request_id})
        return sse.resp
    if done is None:
        await sse.end({"type": "error", "message": "cancelled", "request_id": task.request_id})
    else:
        await sse.end(done.model_dump())
    return sse.resp


async def delete_task(request: web.Request) -> web.Response:
    # Keyed by tenant: another tenant's task is "not found", not "forbidden" (which would
    # confirm that the id exists).
    running = request.app[ACTIVE].get((request[TENANT], request.match_info["request_id"]))
    if running is None:
        return _error(404, "no running task with that request_id")
    running.cancel()
    return web.json_response({"cancelled": True})


# -- OpenAI-compatible -------------------------------------------------------------------

async def openai_endpoint(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    if (limited := _check_rate(request)) is not None:
        return limited
    chat = request.path.endswith("/chat/completions")
    try:
        kind = TaskKind(request.headers.get("X-Cato-Task", "completion"))
    except ValueError:
        return _error(400, f"X-Cato-Task must be one of {[k.value for k in TaskKind]}")
    body = await _json_body(request)
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    model = backend.config.models[backend.config.kinds[kind].model]
    try:
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise ValueError("max_tokens must be a positive integer")
        max_tokens = max_tokens or backend.config.kinds[kind].max_tokens
        if chat:
            msgs = body.get("messages")
            if not isinstance(msgs, list) or not msgs or not all(isinstance(m, dict) and "role" in m for m in msgs):
                raise ValueError("messages must be a non-empty list of {role, content}")
            engine_req = EngineRequest(model.served_name, max_tokens, messages=tuple(msgs),
                                       extra={k: body[k] for k in OPENAI_PASSTHROUGH if k in body})
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise ValueError("prompt must be a string")
            engine_req = EngineRequest(model.served_name, max_tokens, prompt=prompt,
                                       extra={k: body[k] for k in OPENAI_PASSTHROUGH if k in body})
        sla_ms = request.headers.get("X-Cato-Sla-Ms")
        task = backend.orchestrator.new_task(kind, {}, float(sla_ms) if sla_ms else None,
                                             max_tokens, None, passthrough=engine_req)
    except ValueError as e:
        return _error(400, str(e))
    except TaskError as e:
        return _error(e.status, str(e))
    return await _admitted(request, task, lambda: _openai_stream(
        request, backend, task, model.served_name, chat, bool(body.get("stream")), max_tokens))


async def _openai_stream(request: web.Request, backend: Backend, task: Task, served_name: str,
                         chat: bool, stream: bool, max_tokens: int) -> web.StreamResponse:
    rid = ("chatcmpl-" if chat else "cmpl-") + task.request_id
    created = int(time.time())
    obj = "chat.completion.chunk" if chat else "text_completion"
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "X-Cato-Request-Id": task.request_id})

    def chunk(text: str | None, finish: str | None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {"content": text} if text is not None else {}
        else:
            choice["text"] = text or ""
        return b"data: " + orjson.dumps({"id": rid, "object": obj, "created": created,
                                         "model": served_name, "choices": [choice]}) + b"\n\n"

    # A token's chunk is chunk(text, None), whose text is its last value: the bytes around
    # it are the same for every token of the stream, so they are made once.
    close = b'""}}]}\n\n' if chat else b'""}]}\n\n'
    head = chunk("", None)[:-len(close)]
    tail = close[2:]

    async def emit(event: dict[str, Any]) -> None:
        if stream and event["type"] == "token":
            if not resp.prepared:
                await resp.prepare(request)
            await resp.write(head + orjson.dumps(event["text"]) + tail)

    try:
        done = await _serve(request, task, emit)
    except TaskError as e:
        if not resp.prepared:
            return _error(e.status, str(e))
        await resp.write(b"data: " + json.dumps({"error": {"message": str(e)}}).encode() + b"\n\n")
        return resp
    if done is None:
        return _error(499, "cancelled") if not resp.prepared else resp
    tokens = sum(n.output_tokens or 0 for n in done.nodes)
    finish = "length" if tokens >= max_tokens else "stop"
    cato = {"request_id": task.request_id, "ttft_ms": done.ttft_ms, "e2e_ms": done.e2e_ms,
            "sla": done.sla.model_dump(), "replica": done.replica}
    if stream:
        if not resp.prepared:
            await resp.prepare(request)
        # The last chunk, [DONE] and the body's end go out in one send.
        await resp.write_eof(chunk(None, finish) + b"data: [DONE]\n\n")
        return resp
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["message"] = {"role": "assistant", "content": done.text}
    else:
        choice["text"] = done.text
    return web.json_response({"id": rid, "object": "chat.completion" if chat else "text_completion",
                              "created": created, "model": served_name, "choices": [choice],
                              "usage": {"completion_tokens": tokens}, "cato": cato})


# -- status ------------------------------------------------------------------------------

async def status(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    admission = request.app[ADMISSION]
    data = backend.status()
    goodput = backend.metrics.goodput_by_tenant()
    names = set(goodput) | set(admission.in_flight)
    if admission.store is not None:
        names |= set(admission.store.tenants())
    data["auth"] = admission.store is not None
    data["tenants"] = {t: {**goodput.get(t, {"goodput": None, "met": 0, "total": 0,
                                              "cancelled": 0}),
                           "in_flight": admission.in_flight.get(t, 0),
                           "max_in_flight": admission.in_flight_cap(t)}
                       for t in sorted(names)}
    return web.json_response(data)


async def metrics(request: web.Request) -> web.Response:
    data = generate_latest(request.app[BACKEND].metrics.registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    ready = sum(p.ready_count() for p in backend.pools.values())
    return web.json_response({"status": "ok" if ready else "starting", "ready_replicas": ready})


def build_app(backend: Backend) -> web.Application:
    """The API. With `auth.file` set its tokens are loaded now (a bad file raises)."""
    config = backend.config
    store = TokenStore(config.auth.file, log=backend.log) if config.auth.file else None
    app = web.Application(client_max_size=config.limits.max_body_bytes,
                          middlewares=[errors_as_json, authenticate])
    app[BACKEND] = backend
    app[ACTIVE] = {}
    app[STORE] = store
    app[ADMISSION] = admission = Admission(config, store)
    backend.metrics.tenant_in_flight = lambda: admission.in_flight
    app.router.add_post("/v1/tasks", post_task)
    app.router.add_delete("/v1/tasks/{request_id}", delete_task)
    app.router.add_post("/v1/completions", openai_endpoint)
    app.router.add_post("/v1/chat/completions", openai_endpoint)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) from PEM files."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _announce(backend: Backend) -> None:
    config = backend.config
    if config.log_prompts:
        backend.log("cato-backend: WARNING: log_prompts is ON: the inputs and output text of "
                    "every task are written to this log. For debugging only; turn it off "
                    "(drop --log-prompts / log_prompts: true) for real users.")
    if config.auth.file:
        backend.log(f"cato-backend: auth on: bearer tokens from {config.auth.file}; public "
                    f"paths {config.auth.public_paths}")
    else:
        backend.log("cato-backend: auth off: anyone who can reach this port can use it "
                    "(serve --auth FILE turns it on)")


async def start_server(backend: Backend, host: str, port: int,
                       ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Serve the API (handlers are cancelled when their client disconnects); start replicas.
    With `ssl_context` it serves HTTPS."""
    runner = web.AppRunner(build_app(backend), handler_cancellation=True, access_log=None)
    await runner.setup()
    _announce(backend)
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await backend.start()
    return runner, actual

