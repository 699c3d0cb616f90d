"""Persistent result cache (diskcache: SQLite + files, safe across processes and restarts).

Keyed by model, kind and a hash of the whole context the backend would see (prefix, suffix,
language, instruction, ... and max_tokens), so a different model, a different kind or one
changed character is a miss. Bounded in size (least-recently-used eviction at `max_bytes`)
and age (entries older than `max_age_s` are misses and expire on disk). A hit is marked as
such to the editor and is never an SLA result: the backend did not serve it.

Any storage error (read-only or full disk, a corrupt file) turns the cache into misses
with a logged reason; it never fails a request.

Writes are deferred (`put_later`): SQLite's commit would otherwise sit between the backend's
answer and the editor's response. Pending writes are already visible to `get` and are
flushed shortly after, and on `close`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_VERSION = 1
# Fields of a task body that do not change the answer (so they are not part of the key).
_NOT_CONTEXT = {"sla_ms", "request_id"}


def default_cache_dir() -> Path:
    env = os.environ.get("CATO_LSP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/cato/lsp").expanduser()


def cache_key(model: str, kind: str, body: dict[str, Any]) -> str:
    """A stable key for one task: model, kind, and a SHA-256 of the context fields."""
    context = {k: v for k, v in body.items() if k not in _NOT_CONTEXT and k != "kind"}
    digest = hashlib.sha256(json.dumps(context, sort_keys=True, ensure_ascii=False)
                            .encode()).hexdigest()
    return f"v{KEY_VERSION}:{model}:{kind}:{digest}"


@dataclass(frozen=True)
class CachedResult:
    text: str
    stored_at: float  # wall-clock seconds
    ttft_ms: float | None = None  # what the backend took when it served it (for the log)
    e2e_ms: float | None = None


class ResultCache:
    def __init__(self, directory: str | Path, max_bytes: int, max_age_s: float,
                 log: Callable[[str], None] = lambda m: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.max_age_s = max_age_s
        self._log = log
        self._clock = clock
        self._db = None
        self._pending: dict[str, dict] = {}
        self._flush_scheduled = False
        try:
            import diskcache

            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = diskcache.Cache(str(self.directory), size_limit=int(max_bytes),
                                       eviction_policy="least-recently-used",
                                       timeout=1.0)  # SQLite busy wait: bounded
        except Exception as e:  # noqa: BLE001 - any failure: run without a cache
            self._log(f"cache disabled: cannot open {self.directory}: {e}")

    @property
    def available(self) -> bool:
        return self._db is not None

    def get(self, key: str) -> CachedResult | None:
        if self._db is None:
            return None
        try:
            value = self._pending.get(key) or self._db.get(key)
        except Exception as e:  # noqa: BLE001
            self._log(f"cache read failed: {e}")
            return None
        if not isinstance(value, dict):
            return None
        try:
            hit = CachedResult(**value)
        except TypeError:
            return None
        if self._clock() - hit.stored_at > self.max_age_s:
            return None  # too old, even if diskcache has not expired it yet
        return hit

    def put(self, key: str, text: str, ttft_ms: float | None = None,
            e2e_ms: float | None = None) -> None:
        if self._db is None:
            return
        value = {"text": text, "stored_at": self._clock(), "ttft_ms": ttft_ms, "e2e_ms": e2e_ms}
        try:
            self._db.set(key, value, expire=self.max_age_s)
        except Exception as e:  # noqa: BLE001
            self._log(f"cache write failed: {e}")

    def put_later(self, key: str, text: str, ttft_ms: float | None = None,
                  e2e_ms: float | None = None, delay_s: float = 0.01) -> None:
        """`put` after `delay_s` on the running event loop (or now, without one)."""
        if self._db is None:
            return
        self._pending[key] = {"text": text, "stored_at": self._clock(), "ttft_ms": ttft_ms,
                              "e2e_ms": e2e_ms}
        if self._flush_scheduled:
            return
        try:
            import asyncio

            asyncio.get_running_loop().call_later(delay_s, self.flush)
            self._flush_scheduled = True
        except RuntimeError:
            self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for key, value in pending.items():
            self.put(key, value["text"], value["ttft_ms"], value["e2e_ms"])

    # The backend's kind -> model map, remembered so that cache hits work while it is down
    # (the model is part of every key).
    def remember_models(self, backend_url: str, models: dict[str, str]) -> None:
        if self._db is not None and models:
            try:
                self._db.set(f"meta:models:{backend_url}", dict(models))
            except Exception as e:  # noqa: BLE001
                self._log(f"cache write failed: {e}")

    def known_models(self, backend_url: str) -> dict[str, str]:
        if self._db is None:
            return {}
        try:
            value = self._db.get(f"meta:models:{backend_url}")
        except Exception:  # noqa: BLE001
            return {}
        return dict(value) if isinstance(value, dict) else {}

    def volume(self) -> int:
        """Bytes used on disk (approximate, as diskcache counts it)."""
        return int(self._db.volume()) if self._db is not None else 0

    def __len__(self) -> int:
        return len(self._db) if self._db is not None else 0

    def close(self) -> None:
        if self._db is not None:
            self.flush()
            try:
                self._db.close()
            finally:
                self._db = None
