"""The autoscaler driving real replica processes: a burst scales the pool up, quiet scales it
back down, and every request is answered."""

from __future__ import annotations

import asyncio

import aiohttp

from cato_backend.demo import SAMPLES

from .conftest import emulated_config, sse_events, start_backend, stop_backend


async def test_burst_scales_up_then_back_down_without_losing_a_request(fast_profile_path):
    config = emulated_config(fast_profile_path, replicas=1,
                             timeouts={"scaling_tick_s": 0.1, "health_interval_s": 0.5})
    config.models["smollm2"].max_in_flight = 2
    config.models["smollm2"].autoscale = _autoscale()
    rb = await start_backend(config)
    pool = rb.backend.pools["smollm2"]
    try:
        await rb.wait_ready(1)
        peak = 0

        async def watch():
            nonlocal peak
            while True:
                peak = max(peak, pool.ready_count())
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        body = {**SAMPLES["summarization"], "max_tokens": 120, "sla_ms": 400}
        async with aiohttp.ClientSession() as s:
            async def one(i: int):
                await asyncio.sleep(i * 0.05)  # a burst over ~2 s
                return (await sse_events(s, rb.url + "/v1/tasks", body))[-1]

            finals = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(40))), 60)
            assert [f["type"] for f in finals] == ["done"] * 40  # nothing lost
            assert peak >= 2, "the burst should have added replicas"
            served_by = {f["replica"] for f in finals}
            assert len(served_by) >= 2

            async def back_to_one():
                while pool.ready_count() != 1 or any(r.state.value == "draining" for r in pool.replicas):
                    await asyncio.sleep(0.1)

            await asyncio.wait_for(back_to_one(), 30)
            async with s.get(rb.url + "/v1/status") as r:
                status = await r.json()
        watcher.cancel()
        scaler = status["models"]["smollm2"]["autoscaler"]
        actions = [d["action"] for d in scaler["last_decisions"]]
        assert "up" in actions and "down" in actions
        assert all(d["reason"] for d in scaler["last_decisions"])
        assert {r["state"] for r in status["replicas"]} == {"ready", "stopped"}
    finally:
        await stop_backend(rb)


def _autoscale():
    from cato_backend.autoscaler import AutoscalerConfig

    return AutoscalerConfig(
        policy="cato", min_replicas=1, max_replicas=3,
        cato={"window_s": 0.5, "violation_threshold": 1, "max_exceeded_times": 1,
              "violations_per_replica": 2, "idle_windows_before_scale_down": 2,
              "cooldown_s": 0.5, "default_cold_start_s": 2.0},
    )
