"""The backend assembled: pools of replicas per model, their provisioning and health, the
profiler, the orchestrator and the metrics. The HTTP layer (server.py) sits on top."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import replace

import aiohttp

from .clock import Clock, MonotonicClock
from .accelerators import Inventory, cpu_inventory, detect_inventory
from .config import Config, ModelConfig
from .metrics import Metrics
from .orchestrator import Orchestrator
from .placement import NoCapacity, Packer
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
    def __init__(self, config: Config, clock: Clock | None = None, log: Log = print,
                 inventory: Inventory | None = None) -> None:
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
        self.metrics = Metrics(self.pools, self.clock)
        self.handles: dict[str, ReplicaHandle] = {}
        self._tasks: list[asyncio.Task] = []
        self._bring_ups: dict[str, asyncio.Task] = {}
        self._next_index: dict[str, int] = {}
        self._model_dirs: dict[str, str] = {}
        self.cold_start_s: dict[str, float | None] = {
            n: p.profile.base.cold_start_s for n, p in self.pools.items()}
        self.session: aiohttp.ClientSession | None = None
        self.provisioners: dict[str, Provisioner] = {
            "static": StaticProvisioner(),
            "local": LocalProcessProvisioner(config.timeouts.replica_start_s,
                                             config.timeouts.replica_stop_s),
        }
        self._provisioner_of: dict[str, Provisioner] = {}  # replica id -> who started it
        self.specs: dict[str, ReplicaSpec] = {}  # replica id -> how it was started (placed)
        # Accelerator memory bookkeeping for local replicas; the inventory is probed (in a
        # child process) only when some model may want an accelerator.
        self.packer: Packer | None = Packer(inventory) if inventory is not None else None
        self._inventory_task: asyncio.Future[Inventory] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start every replica in the background; the API serves (and queues) meanwhile."""
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(total=None))
        if self.packer is None:
            if any(self._may_use_accelerator(mc) for mc in self.config.models.values()):
                self._inventory_task = asyncio.ensure_future(asyncio.to_thread(detect_inventory))
            else:
                self.packer = Packer(cpu_inventory("not probed: no model asks for one"))
        for name, mc in self.config.models.items():
            if mc.engine == "vllm" and mc.path is None:
                from .model_assets import ensure_default_model

                self._model_dirs[name] = str(await asyncio.to_thread(ensure_default_model,
                                                                     self.log))
            if mc.engine == "static":
                for i, url in enumerate(mc.urls):
                    self.add_replica(name, ReplicaSpec(f"{name}-{i}", "static", mc.served_name,
                                                       url=url))
            else:
                initial = mc.autoscale.min_replicas if mc.autoscale else mc.replicas
                for _ in range(initial):
                    self.add_replica(name)
            if mc.autoscale is not None:
                self._tasks.append(asyncio.create_task(self._scaling_loop(name, mc)))
        self._tasks.append(asyncio.create_task(self._health_loop()))

    def _spec(self, name: str, mc: ModelConfig, index: int) -> ReplicaSpec:
        """How to start replica `index` of a model (local processes)."""
        n = mc.autoscale.max_replicas if mc.autoscale else mc.replicas
        cores = core_ranges(max(n, index + 1), mc.cores_per_replica)
        return ReplicaSpec(f"{name}-{index}", mc.engine, mc.served_name, host="127.0.0.1",
                           model_dir=mc.path or self._model_dirs.get(name),
                           profile_path=resolve_profile_path(mc.profile),
                           max_model_len=mc.max_model_len or self.pools[name].profile.max_model_len,
                           cpu_cores=cores[index % len(cores)], engine_args=tuple(mc.engine_args))

    def add_replica(self, name: str, spec: ReplicaSpec | None = None) -> Replica:
        """Add a replica to a pool as `starting` and bring it up in the background."""
        mc = self.config.models[name]
        if spec is None:
            spec = self._spec(name, mc, self._next_index.get(name, 0))
        self._next_index[name] = max(self._next_index.get(name, 0),
                                     int(spec.replica_id.rsplit("-", 1)[1]) + 1)
        replica = self.pools[name].add_replica(spec.replica_id, spec.url or "",
                                               mc.max_in_flight, self.clock.now())
        task = asyncio.create_task(self._bring_up(replica, spec, mc))
        self._bring_ups[replica.id] = task
        self._tasks.append(task)
        return replica

    # -- placement -------------------------------------------------------------------------

    @staticmethod
    def _may_use_accelerator(mc: ModelConfig) -> bool:
        return (mc.engine != "static" and mc.provisioner == "local"
                and (mc.accelerator in ("cuda", "npu")
                     or (mc.accelerator == "auto" and mc.engine == "vllm")))

    async def _packer(self) -> Packer:
        if self.packer is None:
            assert self._inventory_task is not None
            inventory = await asyncio.shield(self._inventory_task)
            if self.packer is None:
                self.packer = Packer(inventory)
                found = ", ".join(f"{d.kind}:{d.index} {d.name}" for d in inventory.devices)
                self.log(f"cato-backend: accelerators: {found or 'none'} ({inventory.source}); "
                         f"{inventory.cpu_cores} CPU cores")
        return self.packer

    def accelerator_of(self, mc: ModelConfig) -> str:
        """What a model's local replicas run on ("cpu", "cuda", "npu"), once probed."""
        if mc.accelerator != "auto":
            return mc.accelerator
        if mc.engine != "vllm" or self.packer is None:
            return "cpu"
        return self.packer.inventory.kind

    async def _place(self, spec: ReplicaSpec, mc: ModelConfig) -> ReplicaSpec:
        """Reserve a device share for a replica about to start (raises NoCapacity)."""
        if spec.engine == "static":
            return spec
        if mc.provisioner != "local":  # Ray places actors itself, by fractional resources
            if mc.accelerator in ("cuda", "npu"):
                return replace(spec, accelerator=mc.accelerator,
                               memory_fraction=mc.memory_fraction)
            return spec
        if self._may_use_accelerator(mc):
            await self._packer()
        accelerator = self.accelerator_of(mc)
        if accelerator == "cpu":
            return spec
        assert self.packer is not None
        if self.packer.inventory.kind != accelerator:
            raise NoCapacity(f"{mc.served_name} asks for {accelerator}, but this machine has "
                             f"{self.packer.inventory.kind} ({self.packer.inventory.source})")
        placed = self.packer.place(spec.replica_id, mc.memory_fraction)
        return replace(spec, accelerator=accelerator, device_ids=(placed.device.index,),
                       memory_fraction=mc.memory_fraction, cpu_cores=None)

    def _release(self, replica_id: str) -> None:
        if self.packer is not None:
            self.packer.release(replica_id)

    def _free_slots(self, mc: ModelConfig) -> int | None:
        """Replicas of this model that still fit on the accelerators; None: no such bound."""
        if self.packer is None or mc.provisioner != "local" or self.accelerator_of(mc) == "cpu":
            return None
        return self.packer.free_slots(mc.memory_fraction)

    def _provisioner(self, spec: ReplicaSpec, mc: ModelConfig) -> Provisioner:
        name = "static" if spec.engine == "static" else mc.provisioner
        if name not in self.provisioners and name == "ray":  # optional dependency: lazily
            from .ray_provisioner import RayProvisioner

            self.provisioners[name] = RayProvisioner(
                self.config.ray.address, namespace=self.config.ray.namespace,
                start_timeout_s=self.config.timeouts.replica_start_s,
                stop_timeout_s=self.config.timeouts.replica_stop_s)
        return self.provisioners[name]

    async def _bring_up(self, replica: Replica, spec: ReplicaSpec, mc: ModelConfig) -> None:
        provisioner = self._provisioner(spec, mc)
        self._provisioner_of[replica.id] = provisioner

        def spawned(handle: ReplicaHandle) -> None:
            replica.pid, replica.url = handle.pid, handle.url

        try:
            spec = self.specs[replica.id] = await self._place(spec, mc)
            handle = await provisioner.start(spec, self.log, spawned)
        except asyncio.CancelledError:
            self._release(replica.id)
            raise
        except Exception as e:  # the replica is reported stopped; the others keep serving
            self._release(replica.id)
            self.pools[replica.model].mark_stopped(replica, self.clock.now(), str(e))
            self.log(f"replica {replica.id}: failed to start: {e}")
            return
        self.handles[replica.id] = handle
        replica.url, replica.pid = handle.url, handle.pid
        t = self.config.timeouts
        assert self.session is not None
        client = ReplicaClient(handle.url, self.session, connect_timeout_s=t.connect_s,
                               first_token_timeout_s=t.first_token_s, idle_timeout_s=t.idle_s,
                               relay_interval_s=t.relay_interval_ms / 1000)
        pool = self.pools[replica.model]
        if replica.state is not ReplicaState.STARTING:  # removed while it was starting
            await provisioner.stop(handle)
            self._release(replica.id)
            return
        pool.mark_ready(replica, client, self.clock.now())
        if handle.started_s is not None:  # measured start-up feeds the autoscaler
            old = self.cold_start_s.get(replica.model)
            self.cold_start_s[replica.model] = (handle.started_s if old is None
                                                else 0.7 * old + 0.3 * handle.started_s)
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
                        self._release(r.id)
                        self.log(f"replica {r.id}: process {r.pid} exited with code {code}")
                        continue
                    healthy = await r.client.health(timeout_s=min(2.0, interval))
                    if healthy != r.healthy:
                        self.log(f"replica {r.id}: {'healthy again' if healthy else 'unhealthy'}")
                    pool.set_health(r, healthy, self.clock.now())
                    self._replace_if_hung(pool.model, r)

    def _replace_if_hung(self, name: str, r: Replica) -> None:
        """A replica that fails its health checks for `unhealthy_replace_s` is stopped: a
        hung process would otherwise stay `ready`, count towards the pool's size and never
        be replaced. Once it is stopped, the autoscaler (or the fixed pool size) brings up a
        new one."""
        limit = self.config.timeouts.unhealthy_replace_s
        if (r.unhealthy_since is None or self.clock.now() - r.unhealthy_since < limit
                or r.state is not ReplicaState.READY):
            return
        self.log(f"replica {r.id}: unhealthy for {limit:g}s; stopping it")
        self._tasks.append(asyncio.create_task(
            self.remove_replica(name, r.id, f"unhealthy for {limit:g}s", replace=True)))

    # -- autoscaling -----------------------------------------------------------------------

    async def _scaling_loop(self, name: str, mc: ModelConfig) -> None:
        from .autoscaler import make_autoscaler

        scaler = make_autoscaler(mc.autoscale)
        pool = self.pools[name]
        state = scaler.initial_state()
        while True:
            await asyncio.sleep(self.config.timeouts.scaling_tick_s)
            now = self.clock.now()
            pool.sample_load(now)
            pool.report_overdue(now)
            decision, state = scaler.decide(self.scaling_context(name, scaler.retention_s), state)
            if decision.action == "hold":
                continue
            pool.scale_log.append(decision)
            self.log(f"autoscaler {name}: {decision.action} {decision.current} -> "
                     f"{decision.target}: {decision.reason}")
            for _ in range(decision.delta):
                self.add_replica(name)
            for rid in decision.remove:
                self._tasks.append(asyncio.create_task(self.remove_replica(name, rid)))

    def scaling_context(self, name: str, retention_s: float):
        """What the autoscaler may know about a pool now (pure data)."""
        from .scaling_context import scaling_context

        return scaling_context(self.pools[name], self.clock.now(), retention_s,
                               self.config.timeouts.scaling_tick_s, self.cold_start_s.get(name),
                               self._free_slots(self.config.models[name]))

    async def remove_replica(self, name: str, replica_id: str, why: str = "scaled down",
                             replace: bool = False) -> None:
        """Drain a replica (its queue moves to the others, running requests finish), then
        stop it. Nothing accepted is lost. `replace`: start a new one in its place unless an
        autoscaler manages the pool (it restores its bounds by itself)."""
        pool = self.pools[name]
        replica = pool.replica(replica_id)
        if replica.state is ReplicaState.STARTING:
            pool.mark_stopped(replica, self.clock.now(), "removed while starting")
            task = self._bring_ups.get(replica_id)
            if task is not None and not task.done():
                task.cancel()
            return
        pool.drain(replica, self.clock.now())
        deadline = self.clock.now() + self.config.timeouts.drain_timeout_s
        while replica.running and self.clock.now() < deadline:
            await asyncio.sleep(0.05)
        handle = self.handles.get(replica_id)
        if handle is not None:
            await self._provisioner_of[replica_id].stop(handle)
        self._release(replica_id)
        pool.mark_stopped(replica, self.clock.now(), why)
        self.log(f"replica {replica_id}: drained and stopped ({why})")
        if replace and self.config.models[name].autoscale is None:
            self.add_replica(name)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pool in self.pools.values():
            for r in pool.replicas:
                handle = self.handles.get(r.id)
                if handle is not None:
                    await self._provisioner_of[r.id].stop(handle)
                self._release(r.id)
                pool.mark_stopped(r, self.clock.now(), "backend stopped")
        for provisioner in self.provisioners.values():  # e.g. Ray: disconnect from the cluster
            close = getattr(provisioner, "close", None)
            if close is not None:
                await close()
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
                    "busy_s": round(r.utilization(now)[0], 2),
                    "provisioned_s": round(r.utilization(now)[1], 2),
                    "uptime_s": round(now - r.ready_at, 1) if r.ready_at else None,
                    "start_s": round(r.ready_at - r.started_at, 1) if r.ready_at else None,
                    "detail": r.detail or None,
                    **self._placement_of(r.id),
                })
        return {
            "router": self.config.router.policy,
            "models": {n: {"served_name": self.config.models[n].served_name,
                           "engine": self.config.models[n].engine,
                           "emulated": self.config.models[n].engine == "emulated",
                           "profile": p.profile.base.model + " @ " + p.profile.base.hardware,
                           "ttft_factor": round(p.profile.ttft_factor, 3),
                           "decode_factor": round(p.profile.decode_factor, 3),
                           "pending": len(p.pending),
                           **p.utilization_summary(now),
                           "autoscaler": None if self.config.models[n].autoscale is None else {
                               **self.config.models[n].autoscale.model_dump(
                                   include={"policy", "min_replicas", "max_replicas"}),
                               "cold_start_s": self.cold_start_s.get(n),
                               "last_decisions": [
                                   {"action": d.action, "from": d.current, "to": d.target,
                                    "remove": list(d.remove), "reason": d.reason,
                                    "age_s": round(now - d.now, 1)}
                                   for d in list(p.scale_log)[-10:]]}}
                       for n, p in self.pools.items()},
            "kinds": {k.value: {"model": kc.model, "sla_ms": kc.sla_ms, "max_tokens": kc.max_tokens}
                      for k, kc in self.config.kinds.items()},
            "replicas": replicas,
            "goodput": self.metrics.goodput(),
            "accelerators": None if self.packer is None else {  # None: still probing
                **self.packer.inventory.as_dict(), "reservations": self.packer.as_dict()},
        }

    def _placement_of(self, replica_id: str) -> dict:
        spec = self.specs.get(replica_id)
        if spec is None or spec.engine == "static":
            return {}
        if spec.accelerator == "cpu":
            return {"accelerator": "cpu", "cpu_cores": spec.cpu_cores}
        return {"accelerator": spec.accelerator, "devices": list(spec.device_ids),
                "memory_fraction": spec.memory_fraction}
