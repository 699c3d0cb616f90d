"""What this machine has to run replicas on: CUDA GPUs (torch.cuda), Ascend NPUs (torch_npu)
or, with neither, CPU cores.

The probe runs in a child process: asking torch for device properties creates a device
context that would hold accelerator memory in the backend for its whole life, and torch
takes seconds to import. Both torch and torch_npu are optional; without them (or without a
device) the inventory is the CPU's cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

AcceleratorKind = Literal["cuda", "npu"]

# Which variable hides all but some devices from a process, per kind.
VISIBLE_DEVICES_ENV: dict[str, str] = {"cuda": "CUDA_VISIBLE_DEVICES",
                                       "npu": "ASCEND_RT_VISIBLE_DEVICES"}

# Prints one JSON object: {"kind", "source", "devices": [{"name", "memory_bytes"}]}.
_PROBE = r"""
import importlib.util, json
out = {"kind": "cpu", "source": "no torch", "devices": []}
def props(mod, n):
    return [{"name": mod.get_device_properties(i).name,
             "memory_bytes": int(mod.get_device_properties(i).total_memory)} for i in range(n)]
if importlib.util.find_spec("torch") is not None:
    import torch
    out["source"] = "torch %s: no accelerator" % torch.__version__
    if importlib.util.find_spec("torch_npu") is not None:
        import torch_npu  # registers torch.npu
        if torch.npu.is_available() and torch.npu.device_count():
            out = {"kind": "npu", "source": "torch_npu", "devices":
                   props(torch.npu, torch.npu.device_count())}
    if out["kind"] == "cpu" and torch.cuda.is_available() and torch.cuda.device_count():
        out = {"kind": "cuda", "source": "torch.cuda", "devices":
               props(torch.cuda, torch.cuda.device_count())}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Device:
    kind: AcceleratorKind
    index: int  # the physical index, as CUDA_VISIBLE_DEVICES / ASCEND_RT_VISIBLE_DEVICES take it
    name: str
    memory_bytes: int


@dataclass(frozen=True)
class Inventory:
    kind: Literal["cuda", "npu", "cpu"]
    devices: tuple[Device, ...]
    cpu_cores: int
    source: str  # how it was found, for /v1/status

    def as_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "cpu_cores": self.cpu_cores,
                "devices": [{"index": d.index, "name": d.name,
                             "memory_gib": round(d.memory_bytes / 2**30, 1)}
                            for d in self.devices]}


def cpu_inventory(source: str = "no accelerator") -> Inventory:
    return Inventory("cpu", (), os.cpu_count() or 1, source)


def inventory_from_probe(found: dict, environ: dict[str, str] | None = None) -> Inventory:
    """The probe's answer as an Inventory. torch numbers the devices it can see from 0; when
    the backend itself was limited (CUDA_VISIBLE_DEVICES=2,3), index 0 is physical device 2,
    and that is the number a replica's own variable must name."""
    kind = found.get("kind", "cpu")
    if kind not in VISIBLE_DEVICES_ENV or not found.get("devices"):
        return cpu_inventory(str(found.get("source", "no accelerator")))
    visible = (environ if environ is not None else os.environ).get(VISIBLE_DEVICES_ENV[kind])
    physical = [int(v) for v in visible.split(",") if v.strip().isdigit()] if visible else []
    devices = tuple(
        Device(kind, physical[i] if i < len(physical) else i, str(d["name"]),
               int(d["memory_bytes"]))
        for i, d in enumerate(found["devices"]))
    return Inventory(kind, devices, os.cpu_count() or 1, str(found.get("source", kind)))


def detect_inventory(timeout_s: float = 120.0) -> Inventory:
    """Probe for accelerators in a child process (blocking: call it in a thread)."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=timeout_s, check=True)
        return inventory_from_probe(json.loads(done.stdout.strip().splitlines()[-1]))
    except (subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return cpu_inventory(f"accelerator probe failed: {detail.strip()[-200:]}")
