"""Running one task for a provider: cache, backend call, health, `cato/status`.

Both providers (completion, commands) go through `TaskService`, so every task is classified
the same way, carries its SLA, is looked up in and stored to the cache the same way, and
updates the editor's status the same way. Failures are raised as `BackendError`s after the
health bookkeeping; the providers decide what the editor sees.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backend_client import BackendError, BackendTimeout, BackendUnreachable, TaskResult
from .cache import cache_key
from .classify import Action, TaskClass, classify
from .protocol import LastTask

if TYPE_CHECKING:
    from .server import CatoLanguageServer


@dataclass
class Outcome:
    text: str
    task: TaskClass
    cached: bool
    result: TaskResult | None = None  # None for cache hits


class TaskService:
    def __init__(self, ls: CatoLanguageServer) -> None:
        self.ls = ls

    async def prepare(self, action: Action | str,
                      body: dict[str, Any]) -> tuple[TaskClass, dict, str | None]:
        """The task's class, the full body (SLA and max_tokens added) and its cache key
        (None while the model is unknown: a key without it could return another model's
        answer)."""
        settings = self.ls.settings
        task = classify(action, settings.sla)
        body = {"kind": task.kind, **body, "sla_ms": task.sla_ms}
        max_tokens = getattr(settings.max_tokens, task.kind)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        model = settings.model or self.ls.models.get(task.kind)
        if model is None:
            await self.ls.first_contact()  # asked at start-up; wait for it (bounded)
            model = self.ls.models.get(task.kind)
        return task, body, cache_key(model, task.kind, body) if model else None

    def lookup(self, task: TaskClass, key: str | None) -> Outcome | None:
        """A cache hit, reported to the editor as such (not an SLA result)."""
        cache = self.ls.cache
        if cache is None or key is None or not self.ls.settings.cache.enabled:
            return None
        hit = cache.get(key)
        if hit is None:
            return None
        self.ls.log(f"{task.kind}: cache hit (served by the backend earlier in "
                    f"{hit.e2e_ms or 0:.0f} ms)", debug=True)
        self.ls.publish_status(LastTask(kind=task.kind, sla_ms=task.sla_ms, cached=True))
        return Outcome(text=hit.text, task=task, cached=True)

    async def run(self, task: TaskClass, body: dict[str, Any], key: str | None,
                  timeout_s: float,
                  on_token: Callable[[str], None] | None = None) -> Outcome:
        """Run on the backend (never while it is known unreachable: the probe brings it
        back). Raises BackendError subclasses; cancellation aborts the backend task."""
        ls = self.ls
        if ls.health.unreachable:
            raise BackendUnreachable(f"backend {ls.settings.backend_url} is unreachable "
                                     f"({ls.health.reason}); retrying in the background")
        body = {**body, "request_id": uuid.uuid4().hex}
        client = ls.client
        try:
            result = await client.run_task(body, timeout_s=timeout_s, on_token=on_token)
        except asyncio.CancelledError:
            ls.log(f"{task.kind}: cancelled; the backend task {body['request_id']} is aborted",
                   debug=True)
            raise
        except BackendUnreachable as e:
            if client is ls.client:  # not a request to a URL the settings since replaced
                ls.backend_unreachable(e.message)
            raise
        except BackendError as e:
            detail = "timed out" if isinstance(e, BackendTimeout) else "failed"
            ls.log(f"{task.kind} {detail}: {e.message}", error=True)
            if e.status in (401, 403):
                ls.auth_failed(e.message)  # every task would fail so: say it once, loudly
            ls.publish_status(LastTask(kind=task.kind, sla_ms=task.sla_ms, error=e.message))
            raise
        met = result.sla_met
        ls.record_sla(bool(met) if met is not None else True, time.monotonic())
        if ls.cache is not None and key and ls.settings.cache.enabled and result.text:
            ls.cache.put_later(key, result.text, result.ttft_ms, result.e2e_ms)
        ls.log(f"{task.kind}: ttft {_ms(result.ttft_ms)} e2e {_ms(result.e2e_ms)} "
               f"(SLA {task.metric} {task.sla_ms:g} ms {'met' if met else 'MISSED'}; "
               f"replica {result.replica}; {result.client_ms:.0f} ms here)", debug=True)
        ls.publish_status(LastTask(kind=task.kind, ttft_ms=result.ttft_ms, e2e_ms=result.e2e_ms,
                                   sla_ms=task.sla_ms, met=met, cached=False))
        return Outcome(text=result.text, task=task, cached=False, result=result)


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f} ms"
