"""SIGTERM drains: the listening socket closes at once, tasks already streaming finish, then
the replicas stop and the process exits."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp

from .conftest import process_alive
from .lsp.harness import BackendProcess, http_json


async def test_sigterm_lets_running_tasks_finish(tmp_path) -> None:
    backend = BackendProcess(tmp_path)
    backend.start()
    try:
        replica_pids = [r["pid"] for r in http_json(backend.url + "/v1/status")["replicas"]]
        body = {"kind": "summarization", "code": "def f(x):\n    return x * 2\n",
                "language": "python", "max_tokens": 250}  # ~1 s at 4 ms a token
        events = []
        async with aiohttp.ClientSession() as s:
            async with s.post(backend.url + "/v1/tasks", json=body) as resp:
                async for line in resp.content:
                    if not line.startswith(b"data: "):
                        continue
                    events.append(json.loads(line[6:]))
                    if events[-1]["type"] == "token" and len(events) == 2:
                        backend.proc.send_signal(signal.SIGTERM)
                        await asyncio.sleep(0.2)
                        try:  # new work is refused while the old finishes
                            async with s.get(backend.url + "/healthz"):
                                refused = False
                        except aiohttp.ClientConnectionError:
                            refused = True
        assert refused
        assert events[-1]["type"] == "done", events[-1]
        assert sum(e["type"] == "token" for e in events) > 10
        assert await asyncio.to_thread(backend.proc.wait, 15) == 0
        for pid in replica_pids:
            assert not process_alive(pid)
    finally:
        backend.stop()
