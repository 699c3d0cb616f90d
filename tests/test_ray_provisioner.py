"""The Ray provisioner against a real local Ray cluster that these tests start and stop
themselves (`ray start --head --block` from the venv, token authentication on, as Ray 2.60
does by default): an emulated replica as a Ray actor, a backend whose pool runs on Ray, and a
clear error when no cluster is there."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest

from cato_backend.provisioner import ReplicaSpec, ReplicaStartError, free_port
from cato_backend.ray_provisioner import ACTOR_PREFIX, RayProvisioner

from .conftest import (FAST_PROFILE, emulated_config, process_alive, sse_events, start_backend,
                       stop_backend)

RAY_BIN = Path(sys.executable).with_name("ray")
CLUSTER_START_TIMEOUT_S = 60.0


@dataclass
class RayCluster:
    address: str
    namespace: str
    proc: subprocess.Popen
    temp_dir: str
    started_s: float
    engine_pids: list[int] = field(default_factory=list)  # every engine a test started


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(entry))
    return out


def _descendants(pid: int) -> set[int]:
    children, found, todo = _children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = {p for p in pids if process_alive(p)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _watchdogs_of(engine_pids: list[int]) -> set[int]:
    """The provisioner's engine watchdogs (detached: not below the Ray head) for our engines."""
    found = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 4 and argv[1] == b"-c" and b"pidfd_open" in argv[2] \
                and int(argv[4]) in engine_pids:
            found.add(int(entry))
    return found


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """A one-node Ray cluster of our own (2 CPUs), with token authentication on."""
    if importlib.util.find_spec("ray") is None:  # not imported yet: see RAY_AUTH_* below
        pytest.skip("ray is not installed (pip install -e .[ray])")
    if not RAY_BIN.exists():
        pytest.skip(f"no `ray` executable beside {sys.executable}")
    # Short: Ray puts unix sockets under it (about 107 characters at most).
    temp_dir = tempfile.mkdtemp(prefix="cr", dir="/tmp")
    token = secrets.token_hex(32)
    # Ray 2.60 turns token auth on by default; we keep it on and give this cluster its own
    # token through the environment (RAY_AUTH_MODE=token + RAY_AUTH_TOKEN), both for `ray
    # start` (and so every Ray process of the cluster) and for the drivers in this process,
    # so nothing is read from or written to ~/.ray/auth_token. Set before this process
    # imports ray: Ray reads its authentication mode once, at import.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    mp = pytest.MonkeyPatch()
    for k, v in auth.items():
        mp.setenv(k, v)
    # A Ray API called while not connected must fail, not start a cluster of its own.
    mp.setenv("RAY_ENABLE_AUTO_CONNECT", "0")
    mp.delenv("RAY_ADDRESS", raising=False)
    port = free_port()
    # Every fixed default port gets a free one, so this cluster cannot collide with another
    # on the same machine (dashboard 8265, its agent 52365, the Ray Client server 10001).
    cmd = [str(RAY_BIN), "start", "--head", "--block", "--port", str(port),
           "--num-cpus", "2", "--num-gpus", "0", "--disable-usage-stats",
           "--include-dashboard=false", "--dashboard-port", str(free_port()),
           "--dashboard-agent-listen-port", str(free_port()),
           "--ray-client-server-port", str(free_port()), "--temp-dir", temp_dir]
    # The engines' logs (written by the actors, on the node) go to the cluster's temp dir.
    env = {**os.environ, "CATO_CACHE_DIR": str(Path(temp_dir) / "cato")}
    out_path = Path(temp_dir) / "ray-start.log"
    t0 = time.monotonic()
    with open(out_path, "wb") as out:
        # --block keeps `ray start` in the foreground as the parent of the cluster's
        # processes, in a process group (session) of its own.
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    cluster = RayCluster(f"127.0.0.1:{port}", f"cato-test-{secrets.token_hex(3)}", proc,
                         temp_dir, 0.0)
    try:
        while b"Ray runtime started" not in out_path.read_bytes():
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}:\n"
                            f"{out_path.read_text(errors='replace')[-3000:]}")
            if time.monotonic() - t0 > CLUSTER_START_TIMEOUT_S:
                pytest.fail(f"ray start not up after {CLUSTER_START_TIMEOUT_S}s")
            time.sleep(0.1)
        cluster.started_s = time.monotonic() - t0
        print(f"\nRay head up in {cluster.started_s:.1f}s at {cluster.address}")
        yield cluster
    finally:
        _teardown(cluster, mp)


def _teardown(cluster: RayCluster, mp: pytest.MonkeyPatch) -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()  # drivers of this process (a backend leaves its connection open)
    mp.undo()
    proc = cluster.proc
    ours = _descendants(proc.pid) | {proc.pid}  # gcs, raylet, agents, workers, actors
    t0 = time.monotonic()
    # SIGTERM to `ray start --block` alone: it stops the processes it started itself
    # (signalling the whole group at once makes it wait 30 s for a GCS that is already gone).
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its group
    except ProcessLookupError:
        pass
    proc.wait(10)
    # Workers and actors are in groups of their own under the raylet; they exit when it has.
    leftover = _wait_gone(ours, 15)
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    engines = _wait_gone(set(cluster.engine_pids) | _watchdogs_of(cluster.engine_pids), 10)
    print(f"Ray head stopped in {time.monotonic() - t0:.1f}s")
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    assert not leftover, f"Ray processes outlived the cluster: {sorted(leftover)}"
    assert not engines, f"engines or watchdogs outlived the cluster: {sorted(engines)}"


def _spec(replica_id: str, profile_path: Path, **kw) -> ReplicaSpec:
    return ReplicaSpec(replica_id, "emulated", FAST_PROFILE.model, profile_path=str(profile_path),
                       **kw)


async def _answers(url: str) -> bool:
    try:
        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s,
                    s.get(url + "/health") as r):
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _actor_names(namespace: str) -> set[str]:
    import ray

    assert ray.is_initialized()
    actors = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
    return {a["name"] for a in actors if a["namespace"] == namespace}


async def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout_s}s")
        await asyncio.sleep(0.1)


@pytest.mark.ray
async def test_replica_runs_as_a_ray_actor_and_stops_with_its_engine(ray_cluster,
                                                                    fast_profile_path):
    from cato_backend.replica_client import EngineRequest, ReplicaClient

    provisioner = RayProvisioner(ray_cluster.address, namespace=ray_cluster.namespace,
                                 start_timeout_s=45, stop_timeout_s=5)
    spawned, notes = [], []
    try:
        t0 = time.monotonic()
        handle = await asyncio.wait_for(
            provisioner.start(_spec("ray-a-0", fast_profile_path), notes.append,
                              spawned.append), 50)
        print(f"\nreplica as a Ray actor ready in {time.monotonic() - t0:.1f}s "
              f"(started_s {handle.started_s:.2f}s)")
        ray_cluster.engine_pids.append(handle.pid)
        assert spawned == [handle]  # the URL was known before it was healthy
        assert handle.started_s and handle.started_s > 0
        assert handle.url.startswith("http://127.0.0.1:")  # the node is this machine
        node, _, path = handle.log_path.rpartition(":")
        assert node and Path(path).exists() and path.startswith(ray_cluster.temp_dir)
        assert await _answers(handle.url)
        assert ACTOR_PREFIX + "ray-a-0" in await _actor_names(ray_cluster.namespace)

        async with aiohttp.ClientSession() as session:
            client = ReplicaClient(handle.url, session)
            req = EngineRequest(model=FAST_PROFILE.model, max_tokens=8, prompt="def f():")
            async with aclosing(client.stream(req)) as chunks:
                got = [c async for c in asyncio_timeout_iter(chunks, 10)]
        assert any(c.finish_reason for c in got) and got[-1].completion_tokens == 8
        assert "".join(c.text for c in got)

        await asyncio.wait_for(provisioner.stop(handle), 30)
        assert not await _answers(handle.url)
        assert not _wait_gone({handle.pid}, 5), "the engine outlived stop()"
        await _until(lambda: _no_actor(ray_cluster.namespace, "ray-a-0"), 10, "actor gone")
    finally:
        await asyncio.wait_for(provisioner.close(), 30)


async def _no_actor(namespace: str, replica_id: str) -> bool:
    return ACTOR_PREFIX + replica_id not in await _actor_names(namespace)


async def asyncio_timeout_iter(chunks, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), max(0.01, deadline - time.monotonic()))
        except StopAsyncIteration:
            return
        yield chunk


@pytest.mark.ray
async def test_killed_actor_takes_its_engine_along(ray_cluster, fast_profile_path):
    """An actor killed abruptly (no stop: a crash, the driver gone) leaves no engine."""
    import ray

    provisioner = RayProvisioner(ray_cluster.address, namespace=ray_cluster.namespace,
                                 start_timeout_s=45, stop_timeout_s=5)
    try:
        handle = await asyncio.wait_for(
            provisioner.start(_spec("ray-k-0", fast_profile_path), lambda m: None), 50)
        ray_cluster.engine_pids.append(handle.pid)
        actor = ray.get_actor(ACTOR_PREFIX + "ray-k-0", namespace=ray_cluster.namespace)
        await asyncio.to_thread(ray.kill, actor, no_restart=True)
        assert not await asyncio.to_thread(_wait_gone, {handle.pid}, 10), \
            "the engine outlived its killed actor"
        assert not await _answers(handle.url)
    finally:
        await asyncio.wait_for(provisioner.close(), 30)


@pytest.mark.ray
async def test_failed_or_cancelled_start_leaves_no_actor_or_engine(ray_cluster, tmp_path,
                                                                   fast_profile_path):
    provisioner = RayProvisioner(ray_cluster.address, namespace=ray_cluster.namespace,
                                 start_timeout_s=45, stop_timeout_s=5)
    try:
        # An engine that exits at once: the error says so, with the tail of its log.
        with pytest.raises(ReplicaStartError, match="exited with code") as e:
            await asyncio.wait_for(provisioner.start(
                _spec("ray-f-0", tmp_path / "no-such-profile.json"), lambda m: None), 50)
        assert "no-such-profile.json" in str(e.value)
        # An engine still loading (its /health answers 503) when the start is cancelled.
        spawned: list = []
        spec = _spec("ray-c-0", fast_profile_path, engine_args=("--cold-start-s", "60"))
        task = asyncio.create_task(provisioner.start(spec, lambda m: None, spawned.append))
        await _until(lambda: _true(bool(spawned)), 45, "spawned")
        ray_cluster.engine_pids.append(spawned[0].pid)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        assert not _wait_gone({spawned[0].pid}, 5), "the engine outlived a cancelled start"
        await _until(lambda: _no_replicas(ray_cluster.namespace, [{"id": "ray-f-0"},
                                                                 {"id": "ray-c-0"}]),
                     10, "actors gone")
    finally:
        await asyncio.wait_for(provisioner.close(), 30)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.ray
async def test_backend_serves_tasks_from_ray_replicas(ray_cluster, fast_profile_path):
    from cato_backend.demo import SAMPLES

    config = emulated_config(fast_profile_path, replicas=2,
                             ray={"address": ray_cluster.address,
                                  "namespace": ray_cluster.namespace},
                             timeouts={"replica_start_s": 45})
    config.models["smollm2"].provisioner = "ray"
    rb = await start_backend(config)
    replicas: list[dict] = []
    stopped = False
    try:
        t0 = time.monotonic()
        await rb.wait_ready(2, timeout_s=50)
        print(f"\n2 Ray replicas ready in {time.monotonic() - t0:.1f}s")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            final = (await sse_events(s, rb.url + "/v1/tasks", SAMPLES["completion"]))[-1]
            assert final["type"] == "done", final
            async with s.get(rb.url + "/v1/status") as r:
                status = await r.json()
        replicas = status["replicas"]
        assert [r["state"] for r in replicas] == ["ready", "ready"]
        assert all(r["url"].startswith("http://") and r["pid"] for r in replicas)
        ray_cluster.engine_pids.extend(r["pid"] for r in replicas)
        assert {ACTOR_PREFIX + r["id"] for r in replicas} <= \
            await _actor_names(ray_cluster.namespace)
        stopped = True
        await asyncio.wait_for(stop_backend(rb), 60)
        import ray

        assert not ray.is_initialized()  # the backend's stop closed its Ray connection
        for r in replicas:
            assert not await _answers(r["url"])
        assert not _wait_gone({r["pid"] for r in replicas}, 5)
        await asyncio.to_thread(ray.init, address=ray_cluster.address,
                                namespace=ray_cluster.namespace, logging_level="ERROR")
        try:
            await _until(lambda: _no_replicas(ray_cluster.namespace, replicas), 10,
                         "actors gone")
        finally:
            await asyncio.to_thread(ray.shutdown)
    finally:
        if not stopped:
            await asyncio.wait_for(stop_backend(rb), 60)


async def _no_replicas(namespace: str, replicas: list[dict]) -> bool:
    return not {ACTOR_PREFIX + r["id"] for r in replicas} & await _actor_names(namespace)


# -- without a cluster ---------------------------------------------------------------------


async def test_unreachable_cluster_is_a_clear_error(fast_profile_path):
    pytest.importorskip("ray")
    port = free_port()  # nothing listens there
    provisioner = RayProvisioner(f"127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(ReplicaStartError) as e:
        await asyncio.wait_for(provisioner.start(_spec("x-0", fast_profile_path),
                                                 lambda m: None), 15)
    assert time.monotonic() - t0 < 10
    assert f"127.0.0.1:{port}" in str(e.value) and "ray start --head" in str(e.value)


async def test_missing_ray_says_how_to_install_it(fast_profile_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(ReplicaStartError, match=r"pip install -e \.\[ray\]"):
        await RayProvisioner(None).start(_spec("x-0", fast_profile_path), lambda m: None)


def test_placement_follows_the_accelerator(tmp_path):
    p = RayProvisioner(None, namespace="ns")
    cpu = p.actor_options(_spec("m-0", tmp_path, cpu_cores="0-1,3"))
    assert cpu["name"] == "cato-replica-m-0" and cpu["namespace"] == "ns"
    assert cpu["num_cpus"] == 3
    assert p.actor_options(_spec("m-1", tmp_path))["num_cpus"] == 1
    gpu = p.actor_options(_spec("m-2", tmp_path, accelerator="cuda", memory_fraction=0.25))
    assert gpu["num_gpus"] == 0.25
    assert p.actor_options(_spec("m-3", tmp_path, accelerator="cuda"))["num_gpus"] == 1
    npu = p.actor_options(_spec("m-4", tmp_path, accelerator="npu", memory_fraction=0.5))
    assert npu["resources"] == {"NPU": 0.5} and "num_gpus" not in npu


def _group(pgid: int) -> set[int]:
    """The live (not zombie) processes of a process group."""
    out = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _fake_replica() -> tuple[subprocess.Popen, subprocess.Popen, int]:
    """A stand-in actor process, an engine whose group has a second process (as vLLM's
    engine-core workers are), and the watchdog the actor would start for them."""
    from cato_backend.ray_provisioner import _WATCHDOG

    actor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    engine = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"],
                              start_new_session=True)
    launcher = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(actor.pid),
                                 str(engine.pid), "2"], start_new_session=True)
    launcher.wait(10)
    deadline = time.monotonic() + 10
    while len(_group(engine.pid)) < 2 or not _watchdogs_of([engine.pid]):
        assert time.monotonic() < deadline, "fake engine or watchdog did not start"
        time.sleep(0.05)
    return actor, engine, next(iter(_watchdogs_of([engine.pid])))


def _gone_within(pgid: int, engine: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        engine.poll()  # reap the leader (on a node, its dead actor's reaper does)
        if not _group(pgid):
            return True
        time.sleep(0.05)
    return False


def test_watchdog_stops_the_engine_group_when_its_actor_dies():
    actor, engine, watchdog = _fake_replica()
    try:
        actor.kill()  # as ray.kill does: no chance to clean up
        actor.wait()
        assert _gone_within(engine.pid, engine, 10), "the engine group outlived its actor"
        assert not _wait_gone({watchdog}, 5)
    finally:
        for pid in _group(engine.pid):
            os.kill(pid, signal.SIGKILL)
        actor.kill()
        actor.wait()
        engine.wait(5)


def test_watchdog_leaves_when_the_engine_is_stopped_normally():
    from cato_backend.vllm_engine import stop

    actor, engine, watchdog = _fake_replica()
    try:
        stop(engine, 5)
        assert not _wait_gone({watchdog}, 5), "the watchdog outlived its engine"
        assert process_alive(actor.pid)  # and it did nothing to the actor
    finally:
        for pid in _group(engine.pid):
            os.kill(pid, signal.SIGKILL)
        actor.kill()
        actor.wait()
        engine.wait(5)


def test_engine_command_uses_the_devices_ray_gave_the_actor(tmp_path, monkeypatch):
    from cato_backend.ray_provisioner import engine_command

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as Ray sets it for a GPU actor
    spec = ReplicaSpec("m-0", "vllm", "m", model_dir=str(tmp_path), accelerator="cuda",
                       device_ids=(0, 1), memory_fraction=0.25, cpu_cores="0-99999")
    cmd, env = engine_command(spec, "10.0.0.7", 8123)
    assert env["CUDA_VISIBLE_DEVICES"] == "3"  # not the spec's 0,1 (another machine's)
    assert cmd[cmd.index("--host") + 1] == "10.0.0.7" and cmd[cmd.index("--port") + 1] == "8123"
    assert cmd.count("--gpu-memory-utilization") == 1
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.25"
    cpu, cpu_env = engine_command(replace(spec, accelerator="cpu", engine_args=("--x",)),
                                  "h", 1)
    assert "--gpu-memory-utilization" not in cpu and cpu[-1] == "--x"
    # Cores this node does not have (the spec was planned on the backend's machine) are
    # dropped: the engine binds to the cores it may use.
    assert cpu_env["VLLM_CPU_OMP_THREADS_BIND"] != "0-99999"
