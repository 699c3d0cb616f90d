"""The HTTP API (DESIGN.md, "Contracts"): thin aiohttp handlers over the Backend.

POST /v1/tasks answers a server-sent event stream whose last event is `done` or `error`.
A client that goes away cancels its task (the handler is cancelled, which closes the engine
stream); DELETE /v1/tasks/{request_id} does the same for a client that stays.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from .backend import Backend
from .kinds import TaskKind
from .orchestrator import Task, TaskError
from .replica_client import EngineRequest
from .schemas import TASK_REQUEST, DoneEvent

BACKEND = web.AppKey("backend", Backend)
ACTIVE = web.AppKey("active", dict)

OPENAI_PASSTHROUGH = ("temperature", "top_p", "stop", "seed", "presence_penalty",
                      "frequency_penalty", "n", "logit_bias", "user")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"message": message, **extra}}, status=status)


def _validation_errors(e: ValidationError) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in e.errors(include_url=False)]


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except json.JSONDecodeError as e:
        raise web.HTTPBadRequest(text=json.dumps({"error": {"message": f"body is not JSON: {e}"}}),
                                 content_type="application/json") from None


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


async def _serve(request: web.Request, task: Task, emit) -> DoneEvent | None:
    """Run a task as a child of this handler; record its outcome. None when cancelled."""
    backend = request.app[BACKEND]
    active = request.app[ACTIVE]
    if task.request_id in active:
        raise TaskError(f"request_id {task.request_id!r} is already running", 409)
    child = asyncio.create_task(backend.orchestrator.run(task, emit))
    active[task.request_id] = child
    kind = task.kind.value
    try:
        done = await child
    except asyncio.CancelledError:
        backend.metrics.record(kind, "cancelled")
        me = asyncio.current_task()
        if me is not None and me.cancelling():  # the client went away
            raise
        return None  # DELETE /v1/tasks/{id}
    except ConnectionError:
        backend.metrics.record(kind, "cancelled")  # the client went away mid-write
        raise
    except TaskError:
        backend.metrics.record(kind, "error", e2e_s=backend.clock.now() - task.arrival)
        raise
    except Exception as e:  # a bug: still end the stream with an error event, keep serving
        logging.getLogger("cato_backend").exception("task %s failed", task.request_id)
        backend.metrics.record(kind, "error", e2e_s=backend.clock.now() - task.arrival)
        raise TaskError(f"internal error: {type(e).__name__}", 500) from e
    finally:
        active.pop(task.request_id, None)
        if not child.done():
            child.cancel()
    backend.metrics.record(kind, "met" if done.sla.met else "violated",
                           None if done.ttft_ms is None else done.ttft_ms / 1000,
                           done.e2e_ms / 1000)
    return done


async def post_task(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
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
    sse = _SSE(request)
    try:
        done = await _serve(request, task, sse.send)
    except TaskError as e:
        if not sse.resp.prepared:
            return _error(e.status, str(e))
        await sse.send({"type": "error", "message": str(e), "request_id": task.request_id})
        return sse.resp
    if done is None:
        await sse.send({"type": "error", "message": "cancelled", "request_id": task.request_id})
    else:
        await sse.send(done.model_dump())
    return sse.resp


async def delete_task(request: web.Request) -> web.Response:
    child = request.app[ACTIVE].get(request.match_info["request_id"])
    if child is None:
        return _error(404, "no running task with that request_id")
    child.cancel()
    return web.json_response({"cancelled": True})


# -- OpenAI-compatible -------------------------------------------------------------------

async def openai_endpoint(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
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

    rid = ("chatcmpl-" if chat else "cmpl-") + task.request_id
    created = int(time.time())
    obj = "chat.completion.chunk" if chat else "text_completion"
    stream = bool(body.get("stream"))
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "X-Cato-Request-Id": task.request_id})

    def chunk(text: str | None, finish: str | None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {"content": text} if text is not None else {}
        else:
            choice["text"] = text or ""
        return b"data: " + orjson.dumps({"id": rid, "object": obj, "created": created,
                                         "model": model.served_name, "choices": [choice]}) + b"\n\n"

    async def emit(event: dict[str, Any]) -> None:
        if stream and event["type"] == "token":
            if not resp.prepared:
                await resp.prepare(request)
            await resp.write(chunk(event["text"], None))

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
        await resp.write(chunk(None, finish))
        await resp.write(b"data: [DONE]\n\n")
        return resp
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    if chat:
        choice["message"] = {"role": "assistant", "content": done.text}
    else:
        choice["text"] = done.text
    return web.json_response({"id": rid, "object": "chat.completion" if chat else "text_completion",
                              "created": created, "model": model.served_name, "choices": [choice],
                              "usage": {"completion_tokens": tokens}, "cato": cato})


# -- status ------------------------------------------------------------------------------

async def status(request: web.Request) -> web.Response:
    return web.json_response(request.app[BACKEND].status())


async def metrics(request: web.Request) -> web.Response:
    data = generate_latest(request.app[BACKEND].metrics.registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    ready = sum(p.ready_count() for p in backend.pools.values())
    return web.json_response({"status": "ok" if ready else "starting", "ready_replicas": ready})


def build_app(backend: Backend) -> web.Application:
    app = web.Application(client_max_size=backend.config.limits.max_body_bytes,
                          middlewares=[errors_as_json])
    app[BACKEND] = backend
    app[ACTIVE] = {}
    app.router.add_post("/v1/tasks", post_task)
    app.router.add_delete("/v1/tasks/{request_id}", delete_task)
    app.router.add_post("/v1/completions", openai_endpoint)
    app.router.add_post("/v1/chat/completions", openai_endpoint)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def start_server(backend: Backend, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve the API (handlers are cancelled when their client disconnects); start replicas."""
    runner = web.AppRunner(build_app(backend), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await backend.start()
    return runner, actual

