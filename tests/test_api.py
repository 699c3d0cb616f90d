"""The HTTP API end to end: a real backend over emulated replica processes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import aiohttp
import pytest

from cato_backend.demo import SAMPLES

from .conftest import emulated_config, sse_events, start_backend, stop_backend


async def _emulator_stats(url: str) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(url + "/emulator/stats") as r:
            return await r.json()


async def _total_stats(rb) -> dict:
    totals: dict = {}
    for r in rb.backend.pools["smollm2"].replicas:
        for k, v in (await _emulator_stats(r.url)).items():
            if isinstance(v, int):
                totals[k] = totals.get(k, 0) + v
    return totals


async def _wait_for(cond, timeout_s: float = 10.0, what: str = "condition") -> None:
    t0 = asyncio.get_running_loop().time()
    while not await cond():
        if asyncio.get_running_loop().time() - t0 > timeout_s:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", list(SAMPLES))
async def test_each_kind_streams_and_ends_with_done(emulated_backend, kind):
    async with aiohttp.ClientSession() as s:
        events = await sse_events(s, emulated_backend.url + "/v1/tasks", SAMPLES[kind])
    assert events[0]["type"] == "accepted"
    assert any(e["type"] == "token" for e in events)
    done = events[-1]
    assert done["type"] == "done", done
    assert done["kind"] == kind
    assert done["text"]
    assert done["e2e_ms"] > 0 and done["ttft_ms"] <= done["e2e_ms"]
    metric = "ttft" if kind in ("completion", "generation") else "e2e"
    assert done["sla"]["metric"] == metric
    assert done["replica"].startswith("smollm2-")
    assert [n["name"] for n in done["nodes"] if n["kind"] == "llm"]


async def test_translation_runs_validate_and_skips_repair_when_valid(emulated_backend):
    async with aiohttp.ClientSession() as s:
        events = await sse_events(s, emulated_backend.url + "/v1/tasks", SAMPLES["translation"])
    done = events[-1]
    names = [n["name"] for n in done["nodes"]]
    assert names == ["translate", "validate"]  # the emulator's output parses as Python
    assert done["validation"] == "parses as Python"


async def test_generation_gathers_context_before_the_llm(emulated_backend):
    async with aiohttp.ClientSession() as s:
        events = await sse_events(s, emulated_backend.url + "/v1/tasks", SAMPLES["generation"])
    assert [n["name"] for n in events[-1]["nodes"]] == ["gather_context", "generate"]
    assert events[0]["critical_path"] == ["gather_context", "generate"]


async def test_sla_override_is_judged(emulated_backend):
    body = {**SAMPLES["summarization"], "sla_ms": 10}  # 10 ms end to end cannot be met
    async with aiohttp.ClientSession() as s:
        events = await sse_events(s, emulated_backend.url + "/v1/tasks", body)
    assert events[-1]["sla"] == {"metric": "e2e", "target_ms": 10, "met": False}


@pytest.mark.parametrize("body, fragment", [
    ({"kind": "poetry", "text": "x"}, "kind"),
    ({"kind": "completion", "language": "python"}, "prefix"),
    ({"kind": "translation", "code": "x", "source_language": "c"}, "target_language"),
    ({**SAMPLES["completion"], "sla_ms": -5}, "sla_ms"),
    ({**SAMPLES["completion"], "sla_ms": 1e12}, "sla_ms"),
    ({**SAMPLES["completion"], "max_tokens": 0}, "max_tokens"),
    ({**SAMPLES["completion"], "max_tokens": 10**6}, "max_tokens"),
    ({**SAMPLES["completion"], "surprise": 1}, "surprise"),
    ({**SAMPLES["completion"], "prefix": "x = 1\n" * 3000}, "too long"),
    ([1, 2, 3], "invalid"),
])
async def test_bad_input_gets_400_naming_the_problem(emulated_backend, body, fragment):
    async with aiohttp.ClientSession() as s:
        async with s.post(emulated_backend.url + "/v1/tasks", json=body) as r:
            assert r.status == 400
            assert fragment in json.dumps(await r.json())


async def test_body_that_is_not_json_gets_400(emulated_backend):
    async with aiohttp.ClientSession() as s:
        async with s.post(emulated_backend.url + "/v1/tasks", data=b"{nope") as r:
            assert r.status == 400
            assert "not JSON" in (await r.json())["error"]["message"]


async def test_oversize_body_gets_413(emulated_backend):
    body = {**SAMPLES["summarization"], "code": "x" * (2 << 20)}
    async with aiohttp.ClientSession() as s:
        async with s.post(emulated_backend.url + "/v1/tasks", json=body) as r:
            assert r.status == 413
            assert "too large" in (await r.json())["error"]["message"]


async def test_client_disconnect_aborts_the_engine_request(emulated_backend):
    body = {**SAMPLES["summarization"], "max_tokens": 1500}
    async with aiohttp.ClientSession() as s:
        resp = await s.post(emulated_backend.url + "/v1/tasks", json=body)
        tokens = 0
        async for raw in resp.content:
            if b'"token"' in raw:
                tokens += 1
                if tokens == 3:
                    break
        resp.close()  # the editor moved on

    async def aborted():
        return (await _total_stats(emulated_backend)).get("aborted", 0) == 1

    await _wait_for(aborted, what="the emulator to count an abort")
    stats = await _total_stats(emulated_backend)
    assert stats["running"] == 0
    assert emulated_backend.backend.metrics.outcomes[("summarization", "cancelled")] == 1


async def test_delete_cancels_a_running_task_and_aborts_the_engine(emulated_backend):
    body = {**SAMPLES["summarization"], "max_tokens": 1500, "request_id": "req-42"}
    async with aiohttp.ClientSession() as s:
        async def read_stream():
            return await sse_events(s, emulated_backend.url + "/v1/tasks", body)

        reader = asyncio.create_task(read_stream())

        async def running():
            return (await _total_stats(emulated_backend)).get("running", 0) == 1

        await _wait_for(running, what="the request to run")
        async with s.delete(emulated_backend.url + "/v1/tasks/req-42") as r:
            assert r.status == 200
        events = await asyncio.wait_for(reader, 10)
        assert events[-1] == {"type": "error", "message": "cancelled", "request_id": "req-42"}
        async with s.delete(emulated_backend.url + "/v1/tasks/req-42") as r:
            assert r.status == 404
    assert (await _total_stats(emulated_backend))["aborted"] == 1


async def test_cancel_while_queued_never_reaches_the_engine(fast_profile_path):
    config = emulated_config(fast_profile_path, replicas=1)
    config.models["smollm2"].max_in_flight = 1
    rb = await start_backend(config)
    try:
        await rb.wait_ready(1)
        long = {**SAMPLES["summarization"], "max_tokens": 1500, "request_id": "first"}
        queued = {**SAMPLES["summarization"], "max_tokens": 10, "request_id": "second"}
        async with aiohttp.ClientSession() as s:
            first = asyncio.create_task(sse_events(s, rb.url + "/v1/tasks", long))
            await _wait_for(lambda: _async(len(rb.backend.pools["smollm2"].replicas[0].running) == 1))
            second = asyncio.create_task(sse_events(s, rb.url + "/v1/tasks", queued))
            await _wait_for(lambda: _async(len(rb.backend.pools["smollm2"].replicas[0].queue) == 1))
            async with s.delete(rb.url + "/v1/tasks/second") as r:
                assert r.status == 200
            assert (await asyncio.wait_for(second, 5))[-1]["message"] == "cancelled"
            assert len(rb.backend.pools["smollm2"].replicas[0].queue) == 0
            async with s.delete(rb.url + "/v1/tasks/first") as r:
                assert r.status == 200
            await asyncio.wait_for(first, 5)
        assert (await _total_stats(rb))["received"] == 1  # the queued one never left the backend
    finally:
        await stop_backend(rb)


async def _async(value):
    return value


async def test_replica_dying_mid_stream_ends_with_error_and_others_keep_serving(fast_profile_path):
    config = emulated_config(fast_profile_path, replicas=2,
                             timeouts={"health_interval_s": 0.2})
    rb = await start_backend(config)
    try:
        await rb.wait_ready(2)
        body = {**SAMPLES["summarization"], "max_tokens": 1500}
        async with aiohttp.ClientSession() as s:
            resp = await s.post(rb.url + "/v1/tasks", json=body)
            events = []
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line[6:]))
                if len(events) == 3:  # streaming now: kill the replica serving it
                    victim = next(r for r in rb.backend.pools["smollm2"].replicas if r.running)
                    os.killpg(victim.pid, signal.SIGKILL)
            resp.close()
            assert events[-1]["type"] == "error"
            assert "replica failed" in events[-1]["message"]

            async def stopped():
                return victim.state.value == "stopped"

            await _wait_for(stopped, what="the dead replica to be reported stopped")
            for _ in range(3):  # everyone else is still served, by the survivor
                ev = await sse_events(s, rb.url + "/v1/tasks", SAMPLES["completion"])
                assert ev[-1]["type"] == "done" and ev[-1]["replica"] != victim.id
            async with s.get(rb.url + "/v1/status") as r:
                states = {x["id"]: x["state"] for x in (await r.json())["replicas"]}
            assert states[victim.id] == "stopped"
    finally:
        await stop_backend(rb)


async def test_request_to_a_dead_replica_is_retried_on_another(fast_profile_path):
    # health checks too slow to notice: the router still believes in the dead replica
    config = emulated_config(fast_profile_path, replicas=2, timeouts={"health_interval_s": 60})
    rb = await start_backend(config)
    try:
        await rb.wait_ready(2)
        victim = rb.backend.pools["smollm2"].replicas[0]
        os.killpg(victim.pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as s:
            for _ in range(4):
                ev = await sse_events(s, rb.url + "/v1/tasks", SAMPLES["completion"])
                assert ev[-1]["type"] == "done", ev[-1]
                assert ev[-1]["replica"] != victim.id
    finally:
        await stop_backend(rb)


async def test_garbage_answering_replica_gives_error_event(fast_profile_path):
    from aiohttp import web

    async def garbage(request):
        return web.Response(text="<html>I am not an engine</html>")

    app = web.Application()
    app.router.add_post("/v1/completions", garbage)
    async def health(request):
        return web.Response(text="ok")

    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    config = emulated_config(fast_profile_path)
    config.models["smollm2"].engine = "static"
    config.models["smollm2"].urls = [f"http://127.0.0.1:{port}"]
    rb = await start_backend(config)
    try:
        await rb.wait_ready(1)
        async with aiohttp.ClientSession() as s:
            events = await asyncio.wait_for(
                sse_events(s, rb.url + "/v1/tasks", SAMPLES["completion"]), 10)
            assert events[-1]["type"] == "error"
            assert "protocol" in events[-1]["message"]
            async with s.get(rb.url + "/healthz") as r:
                assert r.status == 200
    finally:
        await stop_backend(rb)
        await runner.cleanup()


async def test_openai_completions_stream_and_plain(emulated_backend):
    url = emulated_backend.url + "/v1/completions"
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"prompt": "def f():", "max_tokens": 5, "stream": True}) as r:
            assert r.status == 200
            lines = [ln.decode().strip() async for ln in r.content if ln.strip()]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
        assert "".join(c["choices"][0]["text"] for c in chunks).count("\n") == 5
        async with s.post(url, json={"prompt": "def f():", "max_tokens": 5}) as r:
            body = await r.json()
        assert body["object"] == "text_completion"
        assert body["choices"][0]["text"].count("\n") == 5
        assert body["cato"]["sla"]["metric"] == "ttft"


async def test_openai_chat_with_task_header_is_judged_as_that_kind(emulated_backend):
    url = emulated_backend.url + "/v1/chat/completions"
    msgs = [{"role": "user", "content": "Summarize: x = 1"}]
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"messages": msgs, "max_tokens": 4},
                          headers={"X-Cato-Task": "summarization"}) as r:
            body = await r.json()
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert body["cato"]["sla"]["metric"] == "e2e"
        async with s.post(url, json={"messages": msgs}, headers={"X-Cato-Task": "poetry"}) as r:
            assert r.status == 400
        async with s.post(url, json={"messages": "hi"}) as r:
            assert r.status == 400


async def test_status_metrics_and_healthz(emulated_backend):
    async with aiohttp.ClientSession() as s:
        await sse_events(s, emulated_backend.url + "/v1/tasks", SAMPLES["completion"])
        async with s.get(emulated_backend.url + "/v1/status") as r:
            status = await r.json()
        async with s.get(emulated_backend.url + "/metrics") as r:
            metrics = await r.text()
        async with s.get(emulated_backend.url + "/healthz") as r:
            health = await r.json()
    assert len(status["replicas"]) == 2
    for rep in status["replicas"]:
        assert rep["state"] == "ready" and rep["url"].startswith("http://") and rep["pid"] > 0
        assert "queue_length" in rep
    assert status["goodput"]["completion"]["total"] == 1
    assert status["models"]["smollm2"]["emulated"] is True
    assert 0 < status["models"]["smollm2"]["utilization"] <= 1
    assert status["models"]["smollm2"]["replica_seconds"] > 0
    assert sum(r["busy_s"] for r in status["replicas"]) > 0
    names = {ln.split("{")[0].split(" ")[0] for ln in metrics.splitlines() if ln and not ln.startswith("#")}
    assert names and all(n.startswith("cato_") for n in names)
    for expected in ("cato_tasks_total", "cato_ttft_seconds_bucket", "cato_e2e_seconds_bucket",
                     "cato_queue_length", "cato_replica_state", "cato_goodput_ratio",
                     "cato_replica_busy_seconds_total", "cato_utilization_ratio"):
        assert expected in names
    assert health == {"status": "ok", "ready_replicas": 2}


async def test_no_replica_ready_answers_503_instead_of_hanging(fast_profile_path):
    config = emulated_config(fast_profile_path, replicas=0, limits={"no_replica_timeout_s": 0.3})
    rb = await start_backend(config)
    try:
        async with aiohttp.ClientSession() as s:
            events = await asyncio.wait_for(
                sse_events(s, rb.url + "/v1/tasks", SAMPLES["completion"]), 5)
        assert events[-1]["type"] == "error"
        assert "no replica" in events[-1]["message"]
    finally:
        await stop_backend(rb)


async def test_each_kind_is_served_by_its_own_model_pool(fast_profile_path):
    from cato_backend.config import Config, default_config

    data = default_config().model_dump(mode="json")
    pool = {"served_name": "SmolLM2-135M-Instruct", "engine": "emulated", "replicas": 1,
            "profile": str(fast_profile_path)}
    data["models"] = {"fim": pool, "chat": pool}
    for kind in data["kinds"]:
        data["kinds"][kind]["model"] = "fim" if kind in ("completion", "generation") else "chat"
    rb = await start_backend(Config.model_validate(data))
    try:
        await rb.wait_ready(2)
        async with aiohttp.ClientSession() as s:
            for kind, body in SAMPLES.items():
                done = (await sse_events(s, rb.url + "/v1/tasks", body))[-1]
                expected = "fim-0" if kind in ("completion", "generation") else "chat-0"
                assert done["replica"] == expected, (kind, done["replica"])
        assert [r.served for r in rb.backend.pools["fim"].replicas] == [2]
        assert [r.served for r in rb.backend.pools["chat"].replicas] == [2]
    finally:
        await stop_backend(rb)


async def test_a_bug_inside_a_task_still_ends_the_stream_with_an_error(emulated_backend, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("cato_backend.steps.summarization_messages", broken)
    async with aiohttp.ClientSession() as s:
        events = await sse_events(s, emulated_backend.url + "/v1/tasks", SAMPLES["summarization"])
        assert events[-1]["type"] == "error"
        assert "internal error" in events[-1]["message"]
        ok = await sse_events(s, emulated_backend.url + "/v1/tasks", SAMPLES["completion"])
        assert ok[-1]["type"] == "done"


async def test_the_backend_serves_every_kind_with_cato_plus(fast_profile_path):
    """Ours beyond the paper, in the real server: the slot-aware router reads the pool's
    schedule and the consolidating scaler is a config knob."""
    config = emulated_config(fast_profile_path, replicas=2, router={"policy": "cato_plus"})
    rb = await start_backend(config)
    try:
        await rb.wait_ready(2)
        pool = rb.backend.pools["smollm2"]
        assert pool.router.name == "cato_plus" and pool.live_per_violated > 10**9
        async with aiohttp.ClientSession() as s:
            done = await asyncio.gather(*(sse_events(s, rb.url + "/v1/tasks", SAMPLES[k])
                                          for k in SAMPLES for _ in range(3)))
        assert [d[-1]["type"] for d in done] == ["done"] * 3 * len(SAMPLES)
    finally:
        await stop_backend(rb)
