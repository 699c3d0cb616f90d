"""The backend assembled: pools of replicas per model, their provisioning and health, the
profiler, the orchestrator and the metrics. The HTTP layer (server.py) sits on top."""

from __future__ import annotations

import asyncio
import os
from typing import Callable

import aiohttp

from .clock import Clock, MonotonicClock
from .config import Config, ModelConfig
from .metrics import Metrics
from .orchestrator import Orchestrator
from .pool import Pool, Replica, ReplicaState
from .profiler import OnlineProfile, Profiler
from .profiles import PROFILES_DIR, load_profile
from .provisioner import (LocalProcessProvisioner, Provisioner, ReplicaHandle, ReplicaSpec,
                          StaticProvisioner)
from .replica_client import ReplicaClient
from .router import make_router

Log = Callable[[str], None]


def resolve_profile_path(name: str) -> str:
    return name if os.path.exists(name) else str(PROFILES_DIR / name)


def core_ranges(n_replicas: int, cores_per_replica: int | None) -> list[str | None]:
    """Split this machine's cores among local replicas (one OpenMP team each)."""
    total = os.cpu_count() or 1
    per = cores_per_replica or max(1, total // max(1, n_replicas))
    out: list[str | None] = []
    for i in range(n_replicas):
        lo = (i * per) % total
        hi = min(lo + per, total) - 1
        out.append(f"{lo}-{hi}" if hi > lo else str(lo))
    return out


class Backend:
    def __init__(self, config: Config, clock: Clock | None = None, log: Log = print) -> None:
        self.config = config
        self.clock = clock or MonotonicClock()
        self.log = log
        self.pools: dict[str, Pool] = {}
        for name, mc in config.models.items():
            profile = OnlineProfile(load_profile(resolve_profile_path(mc.profile)))
            router = make_router(config.router.policy, profile, config.router.seed)
            self.pools[name] = Pool(name, profile, router, config.queue.live_per_violated)
        self.profiler = Profiler({n: p.profile for n, p in self.pools.items()})
        self.orchestrator = Orchestrator(config, self.pools, self.profiler, self.clock)
        self.metrics = Metrics(self.pools)
        self.handles: dict[str, ReplicaHandle] = {}
        self._tasks: list[asyncio.Task] = []
        self.session: aiohttp.ClientSession | None = None
        self.provisioners: dict[str, Provisioner] = {
            "static": StaticProvisioner(),
            "local": LocalProcessProvisioner(config.timeouts.replica_start_s),
        }

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start every replica in the background; the API serves (and queues) meanwhile."""
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None))
        for name, mc in self.config.models.items():
            specs = await self._specs(name, mc)
            for spec in specs:
                replica = self.pools[name].add_replica(spec.replica_id, spec.url or "",
                                                       mc.max_in_flight, self.clock.now())
                self._tasks.append(asyncio.create_task(self._bring_up(replica, spec, mc)))
        self._tasks.append(asyncio.create_task(self._health_loop()))

    async def _specs(self, name: str, mc: ModelConfig) -> list[ReplicaSpec]:
        if mc.engine == "static":
            return [ReplicaSpec(f"{name}-{i}", "static", mc.served_name, url=u)
                    for i, u in enumerate(mc.urls)]
        profile = self.pools[name].profile
        model_dir = mc.path
        if mc.engine == "vllm" and model_dir is None:
            from .model_assets import ensure_default_model

            model_dir = str(await asyncio.to_thread(ensure_default_model, self.log))
        cores = core_ranges(mc.replicas, mc.cores_per_replica)
        return [ReplicaSpec(f"{name}-{i}", mc.engine, mc.served_name, host="127.0.0.1",
                            model_dir=model_dir, profile_path=resolve_profile_path(mc.profile),
                            max_model_len=mc.max_model_len or profile.max_model_len,
                            cpu_cores=cores[i], engine_args=tuple(mc.engine_args))
                for i in range(mc.replicas)]

    async def _bring_up(self, replica: Replica, spec: ReplicaSpec, mc: ModelConfig) -> None:
        provisioner = self.provisioners["static" if spec.engine == "static" else "local"]

        def spawned(handle: ReplicaHandle) -> None:
            replica.pid, replica.url = handle.pid, handle.url

        try:
            handle = await provisioner.start(spec, self.log, spawned)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the replica is reported stopped; the others keep serving
            self.pools[replica.model].mark_stopped(replica, self.clock.now(), str(e))
            self.log(f"replica {replica.id}: failed to start: {e}")
            return
        self.handles[replica.id] = handle
        replica.url, replica.pid = handle.url, handle.pid
        t = self.config.timeouts
        assert self.session is not None
        client = ReplicaClient(handle.url, self.session, connect_timeout_s=t.connect_s,
                               first_token_timeout_s=t.first_token_s, idle_timeout_s=t.idle_s)
        self.pools[replica.model].mark_ready(replica, client, self.clock.now())
        ready = sum(p.ready_count() for p in self.pools.values())
        total = sum(len(p.replicas) for p in self.pools.values())
        self.log(f"cato-backend: {ready}/{total} replicas ready")

    async def _health_loop(self) -> None:
        interval = self.config.timeouts.health_interval_s
        while True:
            await asyncio.sleep(interval)
            for pool in self.pools.values():
                for r in pool.replicas:
                    if r.state is not ReplicaState.READY:
                        continue
                    handle = self.handles.get(r.id)
                    code = handle.exited() if handle else None
                    if code is not None:
                        pool.mark_stopped(r, self.clock.now(), f"process exited with code {code}")
                        self.log(f"replica {r.id}: process {r.pid} exited with code {code}")
                        continue
                    healthy = await r.client.health(timeout_s=min(2.0, interval))
                    if healthy != r.healthy:
                        self.log(f"replica {r.id}: {'healthy again' if healthy else 'unhealthy'}")
                    pool.set_health(r, healthy, self.clock.now())

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pool in self.pools.values():
            for r in pool.replicas:
                handle = self.handles.get(r.id)
                provisioner = self.provisioners["static" if handle is None or handle.process is None else "local"]
                if handle is not None:
                    await provisioner.stop(handle)
                pool.mark_stopped(r, self.clock.now(), "backend stopped")
        if self.session is not None:
            await self.session.close()

    # -- reporting -----------------------------------------------------------------------

    def status(self) -> dict:
        now = self.clock.now()
        replicas = []
        for pool in self.pools.values():
            for r in pool.replicas:
                replicas.append({
                    "id": r.id, "model": r.model, "state": r.state.value, "healthy": r.healthy,
                    "url": r.url, "pid": r.pid, "queue_length": len(r.queue),
                    "running": len(r.running), "max_in_flight": r.max_in_flight,
                    "served": r.served, "failed": r.failed,
                    "uptime_s": round(now - r.ready_at, 1) if r.ready_at else None,
                    "start_s": round(r.ready_at - r.started_at, 1) if r.ready_at else None,
                    "detail": r.detail or None,
                })
        return {
            "router": self.config.router.policy,
            "models": {n: {"served_name": self.config.models[n].served_name,
                           "engine": self.config.models[n].engine,
                           "emulated": self.config.models[n].engine == "emulated",
                           "profile": p.profile.base.model + " @ " + p.profile.base.hardware,
                           "ttft_factor": round(p.profile.ttft_factor, 3),
                           "decode_factor": round(p.profile.decode_factor, 3),
                           "pending": len(p.pending)}
                       for n, p in self.pools.items()},
            "kinds": {k.value: {"model": kc.model, "sla_ms": kc.sla_ms, "max_tokens": kc.max_tokens}
                      for k, kc in self.config.kinds.items()},
            "replicas": replicas,
            "goodput": self.metrics.goodput(),
        }
