"""`cato-backend demo`: start the backend, send one task of each kind, print what happened."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from .provisioner import free_port

SAMPLES: dict[str, dict] = {
    "completion": {"kind": "completion", "language": "python",
                   "prefix": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
                   "suffix": "\n\nprint(fibonacci(10))\n"},
    "generation": {"kind": "generation", "language": "python",
                   "instruction": "a function is_palindrome(s) that ignores case and spaces",
                   "context": "import re\n\n"},
    "translation": {"kind": "translation", "source_language": "javascript",
                    "target_language": "python",
                    "code": "function add(a, b) {\n  return a + b;\n}\n"},
    "summarization": {"kind": "summarization", "language": "python",
                      "code": "def mean(xs):\n    return sum(xs) / len(xs) if xs else 0.0\n"},
}


def post_task(base: str, body: dict, timeout: float = 300) -> dict:
    """POST /v1/tasks and return its last event (done or error)."""
    req = urllib.request.Request(base + "/v1/tasks", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    last: dict = {"type": "error", "message": "no events"}
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if line.startswith("data: "):
                last = json.loads(line[6:])
    return last


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the backend exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                if json.load(r)["ready_replicas"] > 0:
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no replica ready after {timeout_s:g}s")


def _cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def run_demo(engine: str, config: str | None, timeout_s: float = 900) -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "cato_backend.cli", "serve", "--port", str(port), "--engine", engine]
    if config:
        cmd += ["--config", config]
    print(f"demo: starting the backend ({engine} engine): {' '.join(cmd[2:])}", flush=True)
    proc = subprocess.Popen(cmd)
    try:
        wait_ready(base, proc, timeout_s)
        rows = []
        for kind, body in SAMPLES.items():
            ev = post_task(base, body)
            if ev.get("type") != "done":
                print(f"demo: {kind} failed: {ev.get('message')}", file=sys.stderr)
                rows.append((kind, None, None, "-", "ERROR", ""))
                continue
            sla = ev["sla"]
            rows.append((kind, ev["ttft_ms"], ev["e2e_ms"], f"{sla['metric']} <= {sla['target_ms']:.0f} ms",
                         "yes" if sla["met"] else "NO", ev["text"].strip().splitlines()[0][:40] if ev["text"].strip() else ""))
        label = " (EMULATED engine)" if engine == "emulated" else " (vLLM-CPU, SmolLM2-135M-Instruct)"
        print(f"\nOne task of each kind{label}:")
        header = ("kind", "TTFT ms", "E2E ms", "SLA", "met", "answer begins")
        widths = [14, 8, 8, 18, 4, 40]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for kind, ttft, e2e, sla, met, text in rows:
            cells = (kind, _cell(ttft), _cell(e2e), sla, met, text.replace("\n", " "))
            print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)))
        return 0 if all(r[4] != "ERROR" for r in rows) else 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
