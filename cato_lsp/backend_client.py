"""HTTP client of the CATO backend: `POST /v1/tasks` read as a server-sent event stream,
`GET /healthz`, `GET /v1/status`.

Cancellation is by closing the response: when the awaiting task is cancelled (a newer
keystroke, `$/cancelRequest`, a cancelled progress) or times out, the connection is closed
rather than returned to the pool, the backend's handler sees its client go away and aborts
the engine request (or drops the queued one). Every call is bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# How the backend starts a token event (with or without the space json.dumps puts).
_TOKEN_EVENT = ('{"type":"token"', '{"type": "token"')


class BackendError(Exception):
    """The backend answered, but not with a result (4xx/5xx, an `error` event, garbage)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class BackendUnreachable(BackendError):
    """No connection to the backend (refused, connect timeout, connection lost)."""


class BackendTimeout(BackendError):
    """The backend did not finish within the caller's time limit (the task was aborted)."""


@dataclass
class TaskResult:
    text: str
    request_id: str | None
    ttft_ms: float | None  # the backend's own numbers (`done` event)
    e2e_ms: float | None
    sla_metric: str | None
    sla_target_ms: float | None
    sla_met: bool | None
    replica: str | None
    client_ms: float  # request sent -> `done` read, as this client saw it
    done: dict[str, Any] = field(default_factory=dict)


class BackendClient:
    def __init__(self, base_url: str, token: str | None = None, connect_timeout_s: float = 2.0,
                 idle_timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s,
                                            sock_read=self.idle_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run_task(self, body: dict[str, Any], timeout_s: float,
                       on_token: Callable[[str], None] | None = None) -> TaskResult:
        """Run one task to its `done` event. Raises BackendUnreachable, BackendTimeout,
        BackendError; asyncio.CancelledError aborts the backend task."""
        t0 = time.perf_counter()
        url = self.base_url + "/v1/tasks"
        resp: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    resp = await self._get_session().post(url, json=body)
                except (aiohttp.ClientConnectionError, OSError) as e:
                    raise BackendUnreachable(_describe(e)) from None
                if resp.status != 200:
                    raise BackendError(await _error_message(resp), resp.status)
                result = await self._read_stream(resp, on_token)
        except TimeoutError:
            if resp is not None:
                resp.close()
            raise BackendTimeout(f"no result within {timeout_s:g} s (task aborted)") from None
        except BaseException:
            # Cancelled or failed: close the connection so the backend aborts the task.
            if resp is not None:
                resp.close()
            raise
        resp.release()
        done = result
        sla = done.get("sla") or {}
        return TaskResult(
            text=str(done.get("text", "")), request_id=done.get("request_id"),
            ttft_ms=done.get("ttft_ms"), e2e_ms=done.get("e2e_ms"),
            sla_metric=sla.get("metric"), sla_target_ms=sla.get("target_ms"),
            sla_met=sla.get("met"), replica=done.get("replica"),
            client_ms=(time.perf_counter() - t0) * 1000, done=done)

    async def _read_stream(self, resp: aiohttp.ClientResponse,
                           on_token: Callable[[str], None] | None) -> dict[str, Any]:
        data: list[str] = []
        try:
            async for raw in resp.content:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                    continue
                if line or not data:
                    continue  # comments, other fields; or a blank line between events
                text, data = "\n".join(data), []
                if on_token is None and text.startswith(_TOKEN_EVENT):
                    continue  # nobody streams these: skip decoding (a token is not the end)
                event = _decode_event(text)
                kind = event.get("type")
                if kind == "token" and on_token is not None:
                    on_token(str(event.get("text", "")))
                elif kind == "done":
                    return event
                elif kind == "error":
                    raise BackendError(str(event.get("message", "error")))
        except aiohttp.ClientPayloadError as e:
            raise BackendError(f"stream broken: {e}") from None
        except (aiohttp.ClientConnectionError, ConnectionError) as e:
            raise BackendError(f"connection lost mid-stream: {_describe(e)}") from None
        if data:  # a last event without the blank line after it
            event = _decode_event("\n".join(data))
            if event.get("type") == "done":
                return event
            if event.get("type") == "error":
                raise BackendError(str(event.get("message", "error")))
        raise BackendError("the event stream ended without a result")

    async def get_json(self, path: str, timeout_s: float) -> Any:
        """GET a JSON endpoint. Raises BackendUnreachable / BackendError / BackendTimeout."""
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    async with self._get_session().get(self.base_url + path) as resp:
                        if resp.status != 200:
                            raise BackendError(await _error_message(resp), resp.status)
                        return await resp.json(content_type=None)
                except (aiohttp.ClientConnectionError, OSError) as e:
                    raise BackendUnreachable(_describe(e)) from None
                except (ValueError, aiohttp.ContentTypeError) as e:
                    raise BackendError(f"{path} is not JSON: {e}") from None
        except TimeoutError:
            raise BackendTimeout(f"{path}: no answer within {timeout_s:g} s") from None

    async def healthz(self, timeout_s: float = 2.0) -> dict[str, Any]:
        return await self.get_json("/healthz", timeout_s)

    async def status(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return await self.get_json("/v1/status", timeout_s)


def _decode_event(text: str) -> dict[str, Any]:
    try:
        event = json.loads(text)
    except ValueError:
        raise BackendError(f"malformed event from the backend: {text[:200]!r}") from None
    if not isinstance(event, dict):
        raise BackendError(f"malformed event from the backend: {text[:200]!r}")
    return event


async def _error_message(resp: aiohttp.ClientResponse) -> str:
    try:
        text = await asyncio.wait_for(resp.text(), 5.0)
    except Exception:  # noqa: BLE001 - the status alone still says something
        text = ""
    message = text[:500]
    try:
        err = json.loads(text).get("error", {})
        message = err.get("message", message)
        if err.get("fields"):
            message += ": " + "; ".join(f"{f.get('field')}: {f.get('problem')}"
                                        for f in err["fields"])
    except (ValueError, AttributeError):
        pass
    if resp.status in (401, 403):
        message = f"not authorized ({message or resp.status}): check the `token` setting"
    elif resp.status == 429:
        retry = resp.headers.get("Retry-After")
        message = f"too many requests ({message or 'rate limited'})" + (
            f"; the backend asks to retry after {retry} s" if retry and retry not in message
            else "")
    return f"HTTP {resp.status}: {message}" if message else f"HTTP {resp.status}"


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text[:300]


def models_by_kind(status: dict[str, Any]) -> dict[str, str]:
    """kind -> served model name, from the backend's /v1/status."""
    models = status.get("models") or {}
    out = {}
    for kind, kc in (status.get("kinds") or {}).items():
        pool = kc.get("model") if isinstance(kc, dict) else None
        served = (models.get(pool) or {}).get("served_name") if pool else None
        if served:
            out[kind] = str(served)
    return out


def is_emulated(status: dict[str, Any]) -> bool:
    return any(bool(m.get("emulated")) for m in (status.get("models") or {}).values()
               if isinstance(m, dict))
