"""Where a new local replica goes: accelerator memory is the budget, not whole devices.

Several replicas, of one model or of different ones, share a device when their memory
fractions (vLLM's --gpu-memory-utilization) fit in it together. A new replica goes to the
fullest device it still fits on (best fit), so that whole devices stay free for replicas
that need one. Pure bookkeeping: the backend calls `place` before starting a replica and
`release` after it stopped, and shows `as_dict()` in /v1/status.
"""

from __future__ import annotations

from dataclasses import dataclass

from .accelerators import Device, Inventory

_EPS = 1e-9  # 0.3 + 0.3 + 0.4 must fit in 1.0 despite floating point


@dataclass(frozen=True)
class Placement:
    device: Device
    memory_fraction: float


class NoCapacity(Exception):
    """No device has the memory a replica asks for; the message says what is free."""


class Packer:
    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._reserved: dict[int, dict[str, float]] = {d.index: {} for d in inventory.devices}
        self._where: dict[str, int] = {}

    def free(self, device: Device) -> float:
        return 1.0 - sum(self._reserved[device.index].values())

    def place(self, replica_id: str, memory_fraction: float) -> Placement:
        if replica_id in self._where:
            raise ValueError(f"replica {replica_id} is placed already")
        fits = [d for d in self.inventory.devices if self.free(d) + _EPS >= memory_fraction]
        if not fits:
            free = ", ".join(f"{d.kind}:{d.index} {self.free(d):.2f}"
                             for d in self.inventory.devices) or "no devices"
            raise NoCapacity(f"no {self.inventory.kind} device has {memory_fraction:.2f} of "
                             f"its memory free ({free})")
        device = min(fits, key=lambda d: (self.free(d), d.index))
        self._reserved[device.index][replica_id] = memory_fraction
        self._where[replica_id] = device.index
        return Placement(device, memory_fraction)

    def release(self, replica_id: str) -> None:
        index = self._where.pop(replica_id, None)
        if index is not None:
            del self._reserved[index][replica_id]

    def free_slots(self, memory_fraction: float) -> int:
        """How many more replicas of this size could be placed now."""
        return sum(int((self.free(d) + _EPS) // memory_fraction)
                   for d in self.inventory.devices)

    def as_dict(self) -> list[dict]:
        return [{"device": f"{d.kind}:{d.index}", "name": d.name,
                 "memory_gib": round(d.memory_bytes / 2**30, 1),
                 "reserved_fraction": round(1.0 - self.free(d), 3),
                 "reserved_gib": round((1.0 - self.free(d)) * d.memory_bytes / 2**30, 1),
                 "replicas": dict(self._reserved[d.index])}
                for d in self.inventory.devices]
