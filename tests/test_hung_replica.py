"""A replica that stops answering (SIGSTOP: alive, but hung) is taken out and replaced."""

from __future__ import annotations

import asyncio
import os
import signal

from .conftest import emulated_config, process_alive, start_backend, stop_backend


async def test_a_hung_replica_is_stopped_and_replaced(fast_profile_path) -> None:
    config = emulated_config(fast_profile_path, replicas=2,
                             timeouts={"health_interval_s": 0.2, "unhealthy_replace_s": 1.0,
                                       "replica_stop_s": 1.0})
    rb = await start_backend(config)
    hung_pid = None
    try:
        await rb.wait_ready(2)
        pool = rb.backend.pools["smollm2"]
        hung = pool.replicas[0]
        hung_pid = hung.pid
        os.kill(hung_pid, signal.SIGSTOP)
        for _ in range(200):  # 20 s at most
            if hung.state.value == "stopped" and pool.ready_count() == 2:
                break
            await asyncio.sleep(0.1)
        assert hung.state.value == "stopped" and hung.detail == "unhealthy for 1s"
        assert pool.ready_count() == 2 and len(pool.replicas) == 3  # a new one in its place
        assert not process_alive(hung_pid)  # its process was killed, not left hanging
    finally:
        if hung_pid is not None and process_alive(hung_pid):
            os.kill(hung_pid, signal.SIGCONT)
        await stop_backend(rb)
