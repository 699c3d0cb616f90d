"""Tenants: rate limits, in-flight caps, fair sharing under a flood, per-client stream caps,
and bounds on what one task may stream. Real backend over emulated (or fake) replicas on
loopback; the admission arithmetic alone with a fake clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web

from cato_backend.auth import TokenStore, add_token
from cato_backend.demo import SAMPLES
from cato_backend.server import ADMISSION
from cato_backend.tenants import Admission, Rejection, Ticket, TokenBucket

from .conftest import emulated_config, sse_events, start_backend, stop_backend

TASKS = "/v1/tasks"
TINY = {**SAMPLES["completion"], "max_tokens": 1}
LONG = {**SAMPLES["summarization"], "max_tokens": 400}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_auth(path: Path, limits: dict[str, dict]) -> dict[str, str]:
    tokens = {t: add_token(path, t)[0] for t in limits}
    data = yaml.safe_load(path.read_text())
    for t, lim in limits.items():
        data["tenants"][t]["limits"] = lim
    path.write_text(yaml.safe_dump(data))
    return tokens


async def wait_until(cond, timeout_s: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not cond():
        if loop.time() - t0 > timeout_s:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# -- pure admission arithmetic ---------------------------------------------------------------

def test_token_bucket_allows_a_burst_then_the_rate():
    b = TokenBucket(rate_per_s=2.0, burst=3, tokens=3, updated=0.0)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(0.0) == pytest.approx(0.5)  # next token in half a second
    assert b.take(0.5) == 0.0
    assert b.take(0.5) > 0
    assert b.take(10.0) == 0.0  # refilled, but never above the burst
    assert b.tokens == pytest.approx(2.0)


def _admission(tmp_path, fast_profile_path, limits, **config) -> tuple[Admission, dict]:
    path = tmp_path / "tokens.yaml"
    tokens = write_auth(path, limits)
    cfg = emulated_config(fast_profile_path, replicas=2, **config)  # 2 x max_in_flight 4
    return Admission(cfg, TokenStore(path)), tokens


def test_default_cap_is_half_the_capacity_and_own_limits_win(tmp_path, fast_profile_path):
    adm, _ = _admission(tmp_path, fast_profile_path, {"a": {}, "b": {"max_in_flight": 1}})
    assert adm.capacity() == 8
    assert adm.in_flight_cap("a") == 4
    assert adm.in_flight_cap("b") == 1
    assert adm.in_flight_cap("anonymous") is None  # no tenant limits for the anonymous
    tickets = [adm.acquire("a", "10.0.0.1") for _ in range(4)]
    assert all(isinstance(t, Ticket) for t in tickets)
    refused = adm.acquire("a", "10.0.0.1")
    assert isinstance(refused, Rejection) and refused.reason == "tenant_in_flight"
    assert isinstance(adm.acquire("b", "10.0.0.2"), Ticket)  # a's cap is not b's
    tickets[0].release()
    tickets[0].release()  # idempotent
    assert adm.in_flight["a"] == 3
    assert isinstance(adm.acquire("a", "10.0.0.1"), Ticket)


def test_auth_off_means_no_tenant_caps_but_client_streams_are_capped(fast_profile_path):
    cfg = emulated_config(fast_profile_path, limits={"max_streams_per_client": 2})
    adm = Admission(cfg, None)
    assert adm.check_rate("anonymous", 0.0) is None
    a, b = adm.acquire("anonymous", "127.0.0.1"), adm.acquire("anonymous", "127.0.0.1")
    third = adm.acquire("anonymous", "127.0.0.1")
    assert isinstance(third, Rejection) and third.reason == "client_streams"
    assert isinstance(adm.acquire("anonymous", "127.0.0.2"), Ticket)
    a.release()
    assert isinstance(adm.acquire("anonymous", "127.0.0.1"), Ticket)
    b.release()


def test_rate_limit_rejection_says_when_to_retry(tmp_path, fast_profile_path):
    adm, _ = _admission(tmp_path, fast_profile_path, {"a": {"rate_per_s": 0.25, "burst": 2}})
    assert adm.check_rate("a", 100.0) is None
    assert adm.check_rate("a", 100.0) is None
    r = adm.check_rate("a", 100.0)
    assert r is not None and r.reason == "rate_limited" and r.retry_after_s == 4
    assert adm.check_rate("a", 104.0) is None


# -- over HTTP -------------------------------------------------------------------------------

@pytest.fixture
async def tenants_backend(fast_profile_path, tmp_path):
    """One replica with 4 slots: each tenant's default cap is 2."""
    path = tmp_path / "tokens.yaml"
    tokens = write_auth(path, {
        "flood": {},                              # default: half the capacity
        "greedy": {"max_in_flight": 100},         # no effective cap (the control)
        "victim": {},
        "limited": {"rate_per_s": 0.2, "burst": 2},
        "single": {"max_in_flight": 1},
    })
    rb = await start_backend(emulated_config(fast_profile_path, replicas=1,
                                             auth={"file": str(path)}))
    try:
        await rb.wait_ready(1)
        rb.tokens = tokens
        yield rb
    finally:
        await stop_backend(rb)


async def test_rate_limit_gives_429_with_retry_after(tenants_backend):
    rb = tenants_backend
    async with aiohttp.ClientSession(headers=bearer(rb.tokens["limited"])) as s:
        for _ in range(2):  # the burst
            assert (await sse_events(s, rb.url + TASKS, TINY))[-1]["type"] == "done"
        async with s.post(rb.url + TASKS, json=TINY) as r:
            assert r.status == 429
            retry = int(r.headers["Retry-After"])
            err = (await r.json())["error"]
        assert 1 <= retry <= 5
        assert err["reason"] == "rate_limited" and err["retry_after_s"] == retry
        assert "limited" in err["message"] and "retry after" in err["message"]
        async with s.post(rb.url + "/v1/completions", json={"prompt": "x", "max_tokens": 1}) as r:
            assert r.status == 429  # the OpenAI-compatible endpoints count too
        async with s.get(rb.url + "/v1/status") as r:
            assert r.status == 200  # only task requests are rate limited
    from cato_lsp.backend_client import BackendClient, BackendError

    client = BackendClient(rb.url, rb.tokens["limited"])  # what the editor's LSP sees
    try:
        with pytest.raises(BackendError) as e:
            await client.run_task(TINY, timeout_s=5)
        assert e.value.status == 429
        assert "HTTP 429: too many requests" in e.value.message and "retry" in e.value.message
    finally:
        await client.close()
    async with aiohttp.ClientSession(headers=bearer(rb.tokens["victim"])) as s:
        assert (await sse_events(s, rb.url + TASKS, TINY))[-1]["type"] == "done"
    assert rb.backend.metrics.rejected.labels("limited", "rate_limited")._value.get() == 3


async def test_in_flight_cap_gives_429_until_a_task_finishes(tenants_backend):
    rb = tenants_backend
    body = {**LONG, "request_id": "long-one"}
    async with aiohttp.ClientSession(headers=bearer(rb.tokens["single"])) as s:
        first = asyncio.create_task(sse_events(s, rb.url + TASKS, body))
        adm = rb.runner.app[ADMISSION]
        await wait_until(lambda: adm.in_flight.get("single") == 1, what="the first task")
        async with s.post(rb.url + TASKS, json=TINY) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "1"
            assert (await r.json())["error"]["reason"] == "tenant_in_flight"
        async with s.get(rb.url + "/metrics") as r:
            assert 'cato_tenant_in_flight{tenant="single"} 1.0' in await r.text()
        async with s.delete(rb.url + "/v1/tasks/long-one") as r:
            assert r.status == 200
        await asyncio.wait_for(first, 10)
        assert (await sse_events(s, rb.url + TASKS, TINY))[-1]["type"] == "done"
    assert "single" not in adm.in_flight


async def _flood_then_measure(rb, flooder: str, n_flood: int = 12) -> tuple[list, list[dict]]:
    """`flooder` opens n_flood long tasks at once; when the replica is busy with them, the
    victim sends 2 short completions at once (its own cap). Returns the flood's HTTP statuses and the victim's
    `done` events. The flood is then cancelled."""
    pool = rb.backend.pools["smollm2"]
    replica = pool.replicas[0]
    flood = aiohttp.ClientSession(headers=bearer(rb.tokens[flooder]))
    statuses: list = []

    async def one_flood(i: int) -> None:
        async with flood.post(rb.url + TASKS, json={**LONG, "request_id": f"f{i}"}) as r:
            statuses.append(r.status)
            if r.status == 200:
                async for _ in r.content:
                    pass

    tasks = [asyncio.create_task(one_flood(i)) for i in range(n_flood)]
    try:
        await wait_until(lambda: len(statuses) >= n_flood - min(n_flood, 4)
                         or len(replica.running) + len(replica.queue) >= n_flood,
                         what="the flood to arrive")
        await wait_until(lambda: len(replica.running) >= 2, what="the flood to run")
        await asyncio.sleep(0.05)
        async with aiohttp.ClientSession(headers=bearer(rb.tokens["victim"])) as s:
            victim = await asyncio.gather(*[sse_events(s, rb.url + TASKS,
                                                       {**SAMPLES["completion"], "max_tokens": 4})
                                            for _ in range(2)])
        return statuses, [ev[-1] for ev in victim]
    finally:
        await flood.close()  # the editor of the flood goes away: its tasks are aborted
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await wait_until(lambda: not replica.running and not len(replica.queue),
                         what="the flood to be aborted")


async def test_a_flooding_tenant_does_not_starve_another(tenants_backend):
    """With the default cap (half of the 4 slots) the flood holds 2 slots and the rest of
    it is refused at once; the victim's completions find free slots and wait for nothing.
    The control, a tenant without an effective cap, fills the slots and the queue, and the
    same completions wait for a slot: the assertion measures what the cap buys."""
    rb = tenants_backend
    statuses, done = await _flood_then_measure(rb, "flood")
    assert statuses.count(200) == 2 and statuses.count(429) == 10
    for d in done:
        assert d["type"] == "done", d
        llm = next(n for n in d["nodes"] if n["kind"] == "llm")
        assert llm["queue_ms"] < 100, llm  # admitted to a free slot at once

    statuses, done = await _flood_then_measure(rb, "greedy")
    assert statuses.count(429) == 0
    waits = [next(n for n in d["nodes"] if n["kind"] == "llm")["queue_ms"] for d in done]
    assert min(waits) > 300, waits  # behind the flood: waited for a running task to end


async def test_concurrent_streams_per_client_are_capped_with_429(fast_profile_path):
    config = emulated_config(fast_profile_path, replicas=1,
                             limits={"max_streams_per_client": 2})
    rb = await start_backend(config)
    try:
        await rb.wait_ready(1)
        async with aiohttp.ClientSession() as s:
            long = [asyncio.create_task(sse_events(s, rb.url + TASKS,
                                                   {**LONG, "request_id": f"l{i}"}))
                    for i in range(2)]
            adm = rb.runner.app[ADMISSION]
            await wait_until(lambda: adm.streams.get("127.0.0.1") == 2, what="two streams")
            async with s.post(rb.url + TASKS, json=TINY) as r:
                assert r.status == 429
                assert r.headers["Retry-After"] == "1"
                assert (await r.json())["error"]["reason"] == "client_streams"
            for i in range(2):
                async with s.delete(rb.url + f"/v1/tasks/l{i}") as r:
                    assert r.status == 200
            await asyncio.gather(*long)
            assert (await sse_events(s, rb.url + TASKS, TINY))[-1]["type"] == "done"
    finally:
        await stop_backend(rb)


# -- bounds on what a task streams -----------------------------------------------------------

class RunawayEngine:
    """An OpenAI-compatible engine that ignores max_tokens: streams `n` tokens of `text`."""

    def __init__(self, n: int, text: str) -> None:
        self.n, self.text = n, text
        self.sent = 0
        self.finished = False
        self.disconnected = asyncio.Event()

    async def completions(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(self.n):
                chunk = {"choices": [{"index": 0, "text": self.text, "finish_reason": None}]}
                await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.sent += 1
                await asyncio.sleep(0.002)
            await resp.write(b'data: {"choices":[{"index":0,"text":"","finish_reason":"length"}]}'
                             b"\n\ndata: [DONE]\n\n")
            self.finished = True
        except (ConnectionError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return resp

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post("/v1/completions", self.completions)

        async def health(request):
            return web.Response(text="ok")

        app.router.add_get("/health", health)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("n, text, what", [
    (2000, "tok ", "token events"),  # many small events: the event bound
    (50, "y" * 2000, "characters"),  # few huge ones: the character bound
])
async def test_an_engine_streaming_past_the_bound_is_cut_with_an_error(fast_profile_path, n,
                                                                        text, what):
    engine = RunawayEngine(n, text)
    runner, url = await engine.start()
    config = emulated_config(fast_profile_path, timeouts={"relay_interval_ms": 0})
    config.models["smollm2"].engine = "static"
    config.models["smollm2"].urls = [url]
    rb = await start_backend(config)
    try:
        await rb.wait_ready(1)
        async with aiohttp.ClientSession() as s:
            events = await asyncio.wait_for(
                sse_events(s, rb.url + TASKS, {**SAMPLES["completion"], "max_tokens": 4}), 10)
        assert events[-1]["type"] == "error"
        assert "stream cut" in events[-1]["message"] and what in events[-1]["message"]
        tokens = [e for e in events if e["type"] == "token"]
        assert len(tokens) <= 4 + 8
        await asyncio.wait_for(engine.disconnected.wait(), 5)  # the engine request aborted
        assert not engine.finished and engine.sent < n
        assert rb.backend.metrics.outcomes[("completion", "error")] == 1
    finally:
        await stop_backend(rb)
        await runner.cleanup()
