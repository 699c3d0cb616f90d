"""Shared fixtures: a fast engine profile, and a real backend over emulated replicas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from cato_backend.profiles import DecodePoint, EngineProfile

FAST_PROFILE = EngineProfile(
    model="test-model", hardware="test", engine="emulated", measured_at="2026-11-21",
    command="tests/conftest.py (made up for fast tests)", max_model_len=2048,
    overhead_ms=5.0, prefill_ms_per_token=0.02,
    decode=[DecodePoint(batch=1, step_ms=4.0), DecodePoint(batch=8, step_ms=8.0)],
)


@pytest.fixture
def fast_profile() -> EngineProfile:
    return FAST_PROFILE


@pytest.fixture
def fast_profile_path(tmp_path: Path) -> Path:
    path = tmp_path / "fast-profile.json"
    path.write_text(FAST_PROFILE.model_dump_json())
    return path


def emulated_config(profile_path: Path, replicas: int = 2, **overrides: Any):
    from cato_backend.config import Config, default_config

    data = default_config().model_dump(mode="json")
    data["models"]["smollm2"].update(engine="emulated", replicas=replicas,
                                     profile=str(profile_path), max_in_flight=4)
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section].update(values)
        else:
            data[section] = values
    return Config.model_validate(data)


class RunningBackend:
    def __init__(self, backend, runner, port: int) -> None:
        self.backend = backend
        self.runner = runner
        self.url = f"http://127.0.0.1:{port}"

    async def wait_ready(self, n: int, timeout_s: float = 30.0) -> None:
        import asyncio
        import time

        t0 = time.monotonic()
        while sum(p.ready_count() for p in self.backend.pools.values()) < n:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"{n} replicas not ready after {timeout_s}s: "
                                   f"{self.backend.status()['replicas']}")
            await asyncio.sleep(0.05)


async def start_backend(config, **backend_args: Any) -> RunningBackend:
    from cato_backend.backend import Backend
    from cato_backend.server import start_server

    backend = Backend(config, log=lambda m: None, **backend_args)
    runner, port = await start_server(backend, "127.0.0.1", 0)
    return RunningBackend(backend, runner, port)


async def stop_backend(rb: RunningBackend) -> None:
    await rb.runner.cleanup()
    await rb.backend.stop()


@pytest.fixture
async def emulated_backend(fast_profile_path: Path) -> AsyncIterator[RunningBackend]:
    rb = await start_backend(emulated_config(fast_profile_path))
    try:
        await rb.wait_ready(2)
        yield rb
    finally:
        await stop_backend(rb)


async def sse_events(session: aiohttp.ClientSession, url: str, body: Any) -> list[dict]:
    """POST and read a whole event stream; returns the decoded events."""
    events = []
    async with session.post(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return events


def process_alive(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie has ended; its parent just has
    not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
