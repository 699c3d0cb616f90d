"""`cato-bench`: benchmarks whose results are files, not claims (DESIGN.md, "Measuring honestly").

Every subcommand writes `<out>/<name>.json` (full configuration, environment, raw summary
numbers) and `<out>/<name>.md` (a short table), and prints the table. Benchmarks run on
loopback only and stop by themselves within a bounded time.

This module holds what the subcommands share: the environment record, percentiles, the
Markdown table and the writing of results.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_OUT = REPO_ROOT / "bench" / "results"
MEASURED_PROFILE = "smollm2-135m-instruct.cpu-2core.json"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> dict[str, Any] | None:
    """The checkout's commit and whether the tree has local changes (None without git)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=5,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing package is just "unknown"
        return None


def busy_processes(window_s: float = 0.25, min_share: float = 0.05) -> list[dict[str, Any]] | None:
    """Other processes using the CPU right now (Linux /proc): share of one core over a short
    window, busiest first; None where /proc is not available."""
    if not os.path.isdir("/proc"):
        return None
    tck = os.sysconf("SC_CLK_TCK")

    def sample() -> dict[int, float]:
        out = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                out[int(d)] = (int(fields[11]) + int(fields[12])) / tck
            except (OSError, IndexError, ValueError):
                pass
        return out

    import time

    a = sample()
    time.sleep(window_s)
    b = sample()
    busy = []
    for pid, t in b.items():
        share = (t - a.get(pid, t)) / window_s
        if share >= min_share and pid != os.getpid():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
            except OSError:
                cmd = ""
            busy.append({"pid": pid, "cpu_share": round(share, 2),
                         "cmd": cmd or "(exited)"})
    return sorted(busy, key=lambda x: -x["cpu_share"])[:8]


def environment() -> dict[str, Any]:
    """What the numbers were measured on (the load average is taken again at the end)."""
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_average(),
        "busy_processes_before": busy_processes(),
        "git": git_commit(),
        "packages": {m: _version(m) for m in ("aiohttp", "numpy", "pydantic")},
        "argv": sys.argv,
    }


def summary(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """n, mean, p50, p90, p99, min, max of a sample (None fields when it is empty)."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "min": None,
                "max": None}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "mean": float(a.mean()), "p50": float(p50), "p90": float(p90),
            "p99": float(p99), "min": float(a.min()), "max": float(a.max())}


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out: str | Path, name: str, payload: dict[str, Any], markdown: str) -> Path:
    """Write `<out>/<name>.json` and `<out>/<name>.md`; returns the JSON path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, allow_nan=False, default=_json_default) + "\n")
    (out / f"{name}.md").write_text(markdown.rstrip() + "\n")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def dev_profile():
    """A stand-in SmolLM2-on-2-CPU-cores profile, constructed in code (NOT measured), used only
    while the measured `profiles/smollm2-135m-instruct.cpu-2core.json` does not exist."""
    from ..profiles import DecodePoint, EngineProfile

    return EngineProfile(
        model="SmolLM2-135M-Instruct", hardware="constructed stand-in (not measured)",
        engine="emulated", measured_at="1970-01-01",
        command="cato_backend/bench/__init__.py dev_profile() (constructed, not measured)",
        notes="development stand-in until the measured CPU profile exists",
        max_model_len=8192, overhead_ms=20.0, prefill_ms_per_token=0.3,
        # Roughly DESIGN.md's vLLM-CPU facts: ~70 tokens/s for one stream, ~285 for 8.
        decode=[DecodePoint(batch=1, step_ms=14.0), DecodePoint(batch=8, step_ms=28.0),
                DecodePoint(batch=32, step_ms=76.0), DecodePoint(batch=64, step_ms=140.0)],
    )


def resolve_profile(arg: str | None, tmp_dir: str | Path | None
                    ) -> tuple[Path | None, Any, str]:
    """The engine profile a benchmark uses: (path, EngineProfile, where it came from).

    No argument: the measured SmolLM2 CPU profile when it exists, else the constructed
    stand-in (written to `tmp_dir` so a subprocess can read it; path None without one, for
    in-process users such as the simulator), labelled as such.
    """
    from ..profiles import PROFILES_DIR, load_profile

    if arg:
        path = Path(arg) if Path(arg).exists() else PROFILES_DIR / arg
        return path.resolve(), load_profile(path), "file"
    measured = PROFILES_DIR / MEASURED_PROFILE
    if measured.exists():
        return measured.resolve(), load_profile(measured), "measured profile (profiles/)"
    prof = dev_profile()
    if tmp_dir is None:
        return None, prof, "constructed stand-in (measured profile not found)"
    path = Path(tmp_dir) / "dev-profile.json"
    path.write_text(prof.model_dump_json())
    return path.resolve(), prof, "constructed stand-in (measured profile not found)"


def profile_record(path: Path, profile: Any, source: str) -> dict[str, Any]:
    return {"path": str(path), "source": source, "model": profile.model,
            "hardware": profile.hardware, "engine": profile.engine,
            "measured_at": profile.measured_at, "overhead_ms": profile.overhead_ms,
            "prefill_ms_per_token": profile.prefill_ms_per_token,
            "decode": [p.model_dump() for p in profile.decode]}


def finish_environment(env: dict[str, Any]) -> None:
    env["load_average_after"] = load_average()
    env["busy_processes_after"] = busy_processes()


def environment_note(env: dict[str, Any], elapsed_s: float) -> str:
    """One Markdown paragraph: machine, load, other busy processes, date, commit, run time."""
    git = env.get("git") or {}

    def busy(key: str) -> str:
        procs = env.get(key)
        if procs is None:
            return "unknown"
        if not procs:
            return "none"
        return "; ".join(f"{p['cpu_share']:.0%} `{p['cmd'][:60]}`" for p in procs[:3])

    return (f"{env['cpu_count']} cores; load average (1/5/15 min) before "
            f"{env['load_average_before']}, after {env.get('load_average_after')}; other "
            f"processes busy at the start: {busy('busy_processes_before')}; at the end: "
            f"{busy('busy_processes_after')}. Python {env['python']}; {env['date_utc']}; "
            f"commit {str(git.get('commit', 'unknown'))[:12]}"
            f"{' (uncommitted changes)' if git.get('dirty') else ''}; run took "
            f"{elapsed_s:.0f} s.")
