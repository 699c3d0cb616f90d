"""Replicas as Ray actors on a Ray cluster (`provisioner: ray` in a model's config).

Each replica is one Ray actor, `cato-replica-<replica_id>` in the configured namespace, placed
by Ray on a node that has what the replica needs:

- `accelerator: cuda` -> `num_gpus = memory_fraction or 1`. Fractional GPUs are how Ray packs
  several replicas on one device; Ray sets CUDA_VISIBLE_DEVICES for the actor, and vLLM gets
  `--gpu-memory-utilization <memory_fraction>` so the replicas sharing a device fit.
- `accelerator: npu` -> the custom resource `NPU` (same fractions); Ray sets
  ASCEND_RT_VISIBLE_DEVICES.
- `accelerator: cpu` -> `num_cpus` = the number of cores in `cpu_cores` (1 without).

The actor picks a free port on its node, builds the engine command with the very code the
local provisioner uses (`LocalProcessProvisioner.command`), starts the engine in its own
process group, writes the engine's log on its node, and health-checks `/health` there. The
router then talks to the replica's URL directly: requests never go through Ray. An engine on
the backend's own node listens on 127.0.0.1, elsewhere on the node's IP.

Engines never outlive their actor: `stop` ends the engine's process group (SIGTERM, SIGKILL
after `stop_timeout_s`) before `ray.kill`; an actor that exits stops its engine at exit; and
a small watchdog process per engine, outside the actor's process tree, kills the engine's
group if the actor dies abruptly (`ray.kill`, a crash, the driver going away: the actors are
not detached, so they end with the backend).

Setting up a cluster
- The backend connects to an existing cluster and never starts one: `ray.address` in the
  config, else `RAY_ADDRESS`, else `auto` (a cluster started on this machine). Start one with
  `ray start --head --port 6379`, and on each other node `ray start --address=HEAD_IP:6379`.
  The backend's machine must be a node of the cluster (or use a `ray://HEAD_IP:10001`
  Ray Client address).
- Every node needs the `cato` package in the same environment as Ray (`pip install -e .[ray]`
  in the same venv, and `ray start` run from that venv, so that Ray's workers can import
  `cato_backend`), the engine (vLLM) for `engine: vllm`, and the files the spec names at the
  same paths: the model directory (`path:`) for vLLM, the profile for the emulated engine.
- Ray 2.60 turns token authentication on by default (`RAY_AUTH_MODE`): a cluster started
  with token auth needs the same token on the backend's side: `RAY_AUTH_MODE=token` and the
  token in `RAY_AUTH_TOKEN`, a file named by `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`.
- Engine logs stay on their node, under `$CATO_CACHE_DIR/logs` (default
  `~/.cache/cato/logs`); a handle's `log_path` reads `NODE_IP:PATH`.

`ray` is an optional dependency: it is imported only when a Ray replica is started.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from .provisioner import (
    LocalProcessProvisioner,
    Log,
    ReplicaHandle,
    ReplicaSpec,
    ReplicaStartError,
    Spawned,
    free_port,
    logs_dir,
)

ACTOR_PREFIX = "cato-replica-"
_VISIBLE_DEVICES = ("CUDA_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES")
_HOW_TO_START = ("start one with `ray start --head --port 6379` (other nodes: `ray start "
                 "--address=HEAD_IP:6379`) and name it in the config (`ray: {address: "
                 "HEAD_IP:6379}`) or in RAY_ADDRESS")
_AUTH_HINT = ("if the cluster uses token authentication (Ray 2.60's default), set "
              "RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN or "
              "RAY_AUTH_TOKEN_PATH")


def _no_sigterm_note(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("SIGTERM handler is not set")


def _import_ray() -> Any:
    # Ray's API calls (ray.kill, ray.get_actor, ...) would otherwise start a whole local
    # cluster when not connected; the backend only ever joins one. Read at Ray's import.
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        import ray
    except ImportError as e:
        raise ReplicaStartError(
            f"`provisioner: ray` needs Ray, which is not installed ({e}); install it with "
            "`pip install -e .[ray]`") from None
    return ray


class RayProvisioner:
    """Starts each replica as a Ray actor on a running cluster (see the module docstring)."""

    def __init__(self, address: str | None, namespace: str = "cato",
                 start_timeout_s: float = 600.0, stop_timeout_s: float = 15.0,
                 connect_timeout_s: float = 60.0) -> None:
        self.address = address
        self.namespace = namespace
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._actors: dict[str, Any] = {}  # replica id -> its actor handle
        self._ray: Any = None
        self._actor_class: Any = None
        self._driver_ip: str | None = None
        self._connected_here = False
        self._lock: asyncio.Lock | None = None

    @property
    def resolved_address(self) -> str:
        return self.address or os.environ.get("RAY_ADDRESS") or "auto"

    # -- connecting ------------------------------------------------------------------------

    async def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._ray is not None:
                return self._ray
            ray = _import_ray()
            address = self.resolved_address
            if not ray.is_initialized():
                await self._check_reachable(address)
                # ray.init runs in a thread, so Ray installs no SIGTERM handler of its own
                # (which would sys.exit the backend); it warns about that: we want it so.
                logging.getLogger("ray._private.worker").addFilter(_no_sigterm_note)
                try:
                    await asyncio.wait_for(asyncio.to_thread(
                        ray.init, address=address, namespace=self.namespace,
                        log_to_driver=False, logging_level=logging.WARNING),
                        self.connect_timeout_s)
                except TimeoutError:
                    raise ReplicaStartError(
                        f"no answer from the Ray cluster at {address!r} within "
                        f"{self.connect_timeout_s:g}s; {_AUTH_HINT}") from None
                except Exception as e:  # noqa: BLE001 (ConnectionError, AuthenticationError, ...)
                    raise ReplicaStartError(
                        f"cannot connect to the Ray cluster at {address!r}: {e}. Is it running? "
                        f"{_HOW_TO_START}; {_AUTH_HINT}") from None
                self._connected_here = True
            self._driver_ip = await asyncio.to_thread(ray.util.get_node_ip_address)
            self._actor_class = ray.remote(ReplicaActor)
            self._ray = ray
            return ray

    async def _check_reachable(self, address: str) -> None:
        """Fail fast, with advice, when nothing listens at a `host:port` address (ray.init
        would retry for a long while)."""
        if address == "local":
            raise ReplicaStartError(
                "ray address 'local' would start a new Ray cluster inside the backend; "
                f"{_HOW_TO_START}")
        if address == "auto":
            return  # ray.init itself fails at once when no local cluster is known
        hostport = address.removeprefix("ray://").rstrip("/")
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            return
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"),
                                                                       int(port)), 5.0)
        except (OSError, TimeoutError) as e:
            raise ReplicaStartError(
                f"no Ray cluster reachable at {address!r} ({e or type(e).__name__}); "
                f"{_HOW_TO_START}") from None
        writer.close()

    # -- placement -------------------------------------------------------------------------

    def actor_options(self, spec: ReplicaSpec) -> dict[str, Any]:
        """Ray actor options for one replica: its name and the resources it needs."""
        options: dict[str, Any] = {
            "name": ACTOR_PREFIX + spec.replica_id, "namespace": self.namespace,
            "max_restarts": 0, "max_concurrency": 4}  # stop may run while wait_healthy does
        share = spec.memory_fraction or 1
        if spec.accelerator == "cuda":
            options.update(num_gpus=share, num_cpus=1)
        elif spec.accelerator == "npu":
            options.update(resources={"NPU": share}, num_cpus=1)
        elif spec.accelerator == "cpu":
            options["num_cpus"] = len(_cores(spec.cpu_cores)) or 1
        else:
            raise ReplicaStartError(f"replica {spec.replica_id}: unknown accelerator "
                                    f"{spec.accelerator!r}")
        return options

    # -- the Provisioner protocol ----------------------------------------------------------

    async def start(self, spec: ReplicaSpec, log: Log, spawned: Spawned | None = None
                    ) -> ReplicaHandle:
        if spec.engine not in ("vllm", "emulated"):
            raise ReplicaStartError(f"a Ray actor cannot run engine {spec.engine!r}")
        t0 = time.monotonic()
        await self._connect()
        options = self.actor_options(spec)
        try:
            # Registering a named actor is a blocking call to the cluster.
            actor = await asyncio.to_thread(
                lambda: self._actor_class.options(**options).remote())
        except ValueError as e:  # the name is taken
            raise ReplicaStartError(
                f"replica {spec.replica_id}: cannot create Ray actor {options['name']!r} in "
                f"namespace {self.namespace!r}: {e} (another backend on this cluster may use "
                "the same namespace: set `ray: {namespace: ...}`)") from None
        self._actors[spec.replica_id] = actor
        placement = {k: v for k, v in options.items()
                     if k in ("num_cpus", "num_gpus", "resources")}
        log(f"replica {spec.replica_id}: Ray actor {options['name']} requested with {placement}")
        try:
            info = await self._result(
                actor.launch.remote(spec, self._driver_ip, self.stop_timeout_s), t0, log,
                spec.replica_id, f"waiting for a Ray node with {placement}")
            handle = ReplicaHandle(spec.replica_id, info["url"], info["pid"],
                                   log_path=f"{info['node_ip']}:{info['log_path']}")
            log(f"replica {spec.replica_id}: starting {spec.engine} engine on Ray node "
                f"{info['node_ip']}, pid {info['pid']}, {handle.url} (log {handle.log_path})")
            if spawned:
                spawned(handle)
            left = self.start_timeout_s - (time.monotonic() - t0)
            outcome = await self._result(actor.wait_healthy.remote(max(left, 0.0)), t0, log,
                                         spec.replica_id, "still starting")
            if outcome["error"]:
                raise ReplicaStartError(outcome["error"])
        except BaseException:
            # Cancelled or failed: the actor and its engine go; shielded so that a second
            # cancellation cannot leave them behind.
            await asyncio.shield(asyncio.ensure_future(self._discard(spec.replica_id)))
            raise
        handle.started_s = time.monotonic() - t0
        log(f"replica {spec.replica_id}: ready after {handle.started_s:.1f}s "
            f"(Ray node {info['node_ip']})")
        return handle

    async def _result(self, ref: Any, t0: float, log: Log, replica_id: str, note: str) -> Any:
        """Await an actor call, logging every 10 s, within the replica's start time-out."""
        ray = self._ray
        future = asyncio.wrap_future(ref.future())
        while True:
            left = self.start_timeout_s - (time.monotonic() - t0)
            if left <= 0:
                future.cancel()
                raise ReplicaStartError(f"replica {replica_id} not ready after "
                                        f"{self.start_timeout_s:g}s ({note})")
            done, _ = await asyncio.wait({future}, timeout=min(10.0, left))
            if done:
                try:
                    return future.result()
                except ray.exceptions.RayError as e:
                    raise ReplicaStartError(f"replica {replica_id}: its Ray actor failed: "
                                            f"{e}") from None
            log(f"replica {replica_id}: {note} ({time.monotonic() - t0:.0f}s)")

    async def stop(self, handle: ReplicaHandle) -> None:
        await self._discard(handle.replica_id)

    async def _discard(self, replica_id: str) -> None:
        """Stop a replica's engine (its whole process group), then kill its actor."""
        actor = self._actors.pop(replica_id, None)
        ray = self._ray
        if actor is None or ray is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(
                actor.stop.remote(self.stop_timeout_s).future()), self.stop_timeout_s + 15)
        except (TimeoutError, ray.exceptions.RayError):
            pass  # the actor is dead or stuck: killing it lets its watchdog end the engine
        try:
            await asyncio.to_thread(ray.kill, actor, no_restart=True)
        except ray.exceptions.RayError:
            pass

    async def close(self) -> None:
        """Stop every replica still running, and disconnect if this provisioner connected."""
        await asyncio.gather(*(self._discard(r) for r in list(self._actors)))
        if self._ray is not None and self._connected_here:
            await asyncio.to_thread(self._ray.shutdown)
        self._ray = None
        self._connected_here = False


# -- on the node ---------------------------------------------------------------------------

# A watchdog beside each engine: once the actor process is gone (killed, crashed) while the
# engine's process group still lives, it stops the group (SIGTERM, then SIGKILL). It detaches
# (forks, the first process exits) so that Ray, which may kill an actor's child processes
# with it, does not take it down before it has done its work.
_WATCHDOG = r"""
import os, select, signal, sys, time
from cato_backend.vllm_engine import group_alive  # zombies may wait long for init
actor, pgid, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
try:
    fd = os.pidfd_open(actor)
except (AttributeError, OSError):
    fd = None
if os.fork():
    os._exit(0)
def actor_gone(wait):
    if fd is not None:
        return bool(select.select([fd], [], [], wait)[0])
    time.sleep(wait)
    try:
        os.kill(actor, 0)
        return False
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
while group_alive(pgid):
    if actor_gone(0.5):
        break
else:
    sys.exit(0)
for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        sys.exit(0)
    deadline = time.monotonic() + wait
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
"""


class ReplicaActor:
    """One replica on a Ray node: an engine server in its own process group, plus its
    watchdog. Made a Ray actor with `ray.remote(ReplicaActor)` by the provisioner."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.log_path: Path | None = None
        self.node_ip: str | None = None
        self.launched_at = 0.0
        self._stopping = threading.Event()
        atexit.register(self._kill_engine)

    def launch(self, spec: ReplicaSpec, driver_ip: str | None, grace_s: float) -> dict:
        """Start the engine; returns at once with its URL, pid, node and log path."""
        import ray

        self.node_ip = ray.util.get_node_ip_address()
        host = "127.0.0.1" if self.node_ip == driver_ip else self.node_ip
        port = free_port(host)
        cmd, env = engine_command(spec, host, port)
        namespace = ray.get_runtime_context().namespace
        self.log_path = logs_dir() / f"ray-{namespace}-{spec.replica_id}.log"
        self.launched_at = time.monotonic()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.proc.pid),
             str(grace_s)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        watchdog.wait(timeout=30)  # it has forked its watcher off and exited
        self.url = f"http://{host}:{port}"
        return {"url": self.url, "pid": self.proc.pid, "node_ip": self.node_ip,
                "log_path": str(self.log_path)}

    def wait_healthy(self, timeout_s: float) -> dict:
        """Poll the engine's `/health` until it answers 200; {"error": None} then, else a
        message (the engine exited, was stopped, or timed out) with its log's tail."""
        assert self.proc is not None and self.url is not None
        where = f"on Ray node {self.node_ip}; see {self.node_ip}:{self.log_path}"
        while True:
            code = self.proc.poll()
            if code is not None:
                return {"error": f"engine exited with code {code} while starting {where}:\n"
                                 f"{self._tail()}"}
            if self._stopping.is_set():
                return {"error": "stopped while starting"}
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return {"error": None, "started_s": time.monotonic() - self.launched_at}
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - self.launched_at > timeout_s:
                return {"error": f"engine not healthy after {timeout_s:.0f}s {where}:\n"
                                 f"{self._tail()}"}
            time.sleep(0.25)

    def stop(self, grace_s: float) -> int | None:
        """Stop the engine and everything it started (SIGTERM, SIGKILL after grace_s)."""
        from .vllm_engine import stop as stop_process_group

        self._stopping.set()
        if self.proc is None:
            return None
        return stop_process_group(self.proc, grace_s)

    def _kill_engine(self) -> None:
        """At the actor's exit: the engine must not outlive it."""
        proc = getattr(self, "proc", None)  # None also when __init__ never ran
        if proc is None or proc.poll() is not None:
            return
        from .vllm_engine import stop as stop_process_group

        with contextlib.suppress(OSError):
            stop_process_group(proc, 3.0)

    def __del__(self) -> None:
        self._kill_engine()

    def _tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def engine_command(spec: ReplicaSpec, host: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The engine's command and environment inside an actor: the local provisioner's, with
    the devices Ray gave the actor (it set *_VISIBLE_DEVICES in this process's environment)
    rather than the spec's, and the spec's cores only where this node has them."""
    cores = spec.cpu_cores if _cores(spec.cpu_cores) <= _allowed_cores() else None
    spec = replace(spec, host=host, port=port, device_ids=(), cpu_cores=cores)
    cmd, env = LocalProcessProvisioner().command(spec, port)
    if (spec.engine == "vllm" and spec.accelerator != "cpu" and spec.memory_fraction
            and not any(a.split("=")[0] == "--gpu-memory-utilization" for a in cmd)):
        cmd += ["--gpu-memory-utilization", f"{spec.memory_fraction:g}"]
    for var in _VISIBLE_DEVICES:
        if var in os.environ:
            env[var] = os.environ[var]
    return cmd, env


def _cores(spec: str | None) -> set[int]:
    """The cores of a list like `0-1,3` (empty for None)."""
    out: set[int] = set()
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _allowed_cores() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


__all__ = ["ACTOR_PREFIX", "RayProvisioner", "ReplicaActor", "engine_command"]
