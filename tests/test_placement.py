"""Accelerator inventory and packing replicas by memory fraction."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cato_backend.accelerators import (Device, Inventory, detect_inventory,
                                       inventory_from_probe)
from cato_backend.placement import NoCapacity, Packer
from cato_backend.provisioner import LocalProcessProvisioner, ReplicaSpec

from .conftest import emulated_config, start_backend, stop_backend

GIB = 2**30


def gpus(n: int, gib: int = 80) -> Inventory:
    return Inventory("cuda", tuple(Device("cuda", i, "H100", gib * GIB) for i in range(n)),
                     16, "test")


def test_two_halves_share_a_device_and_the_third_goes_to_the_next() -> None:
    packer = Packer(gpus(2))
    assert [packer.place(f"r{i}", 0.45).device.index for i in range(3)] == [0, 0, 1]
    assert packer.free_slots(0.45) == 1  # device 1 has 0.55 left; device 0 only 0.1


def test_best_fit_keeps_a_whole_device_free_for_a_big_replica() -> None:
    packer = Packer(gpus(2))
    packer.place("big-0", 0.6)
    assert packer.place("small-0", 0.3).device.index == 0  # the fuller device it still fits
    assert packer.place("big-1", 0.9).device.index == 1


def test_fractions_that_add_up_to_one_fit_despite_floating_point() -> None:
    packer = Packer(gpus(1))
    for i in range(10):
        packer.place(f"r{i}", 0.1)
    assert packer.free_slots(0.1) == 0


def test_no_capacity_says_what_is_free_and_release_frees_it() -> None:
    packer = Packer(gpus(1))
    packer.place("a", 0.9)
    with pytest.raises(NoCapacity, match=r"0\.45 of its memory free \(cuda:0 0\.10\)"):
        packer.place("b", 0.45)
    packer.release("a")
    assert packer.place("b", 0.45).device.index == 0
    with pytest.raises(ValueError, match="placed already"):
        packer.place("b", 0.1)


def test_status_reports_memory_per_device() -> None:
    packer = Packer(gpus(1, gib=80))
    packer.place("m1-0", 0.25)
    packer.place("m2-0", 0.5)
    [dev] = packer.as_dict()
    assert dev["device"] == "cuda:0" and dev["reserved_fraction"] == 0.75
    assert dev["reserved_gib"] == 60.0 and dev["replicas"] == {"m1-0": 0.25, "m2-0": 0.5}


def test_probe_indices_follow_the_backends_own_visible_devices() -> None:
    found = {"kind": "npu", "source": "torch_npu",
             "devices": [{"name": "Ascend910B", "memory_bytes": 64 * GIB}] * 2}
    inv = inventory_from_probe(found, {"ASCEND_RT_VISIBLE_DEVICES": "4,6"})
    assert [(d.kind, d.index) for d in inv.devices] == [("npu", 4), ("npu", 6)]
    assert inventory_from_probe(found, {}).devices[1].index == 1
    assert inventory_from_probe({"kind": "cpu", "source": "no torch", "devices": []}).kind == "cpu"


def test_probe_on_this_machine_finds_cpu_cores() -> None:
    inv = detect_inventory()
    assert inv.kind in ("cpu", "cuda", "npu")  # whatever runs the tests; CI has no GPU
    assert inv.cpu_cores == os.cpu_count() and inv.source
    if inv.kind == "cpu":
        assert inv.devices == ()


def test_vllm_on_a_gpu_gets_its_device_and_memory_share(tmp_path: Path) -> None:
    spec = ReplicaSpec("m-0", "vllm", "m", model_dir=str(tmp_path), accelerator="cuda",
                       device_ids=(3,), memory_fraction=0.45)
    cmd, env = LocalProcessProvisioner().command(spec, 8100)
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.45"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env  # CPU-only settings stay off
    own = ReplicaSpec("m-1", "vllm", "m", model_dir=str(tmp_path), accelerator="npu",
                      device_ids=(1,), memory_fraction=0.45,
                      engine_args=("--gpu-memory-utilization", "0.3"))
    cmd, env = LocalProcessProvisioner().command(own, 8100)
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "1"
    assert cmd.count("--gpu-memory-utilization") == 1 and "0.3" in cmd  # the user's wins


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


async def test_backend_packs_replicas_by_memory_and_shows_it(fast_profile_path) -> None:
    """Emulated replicas asking for a GPU share, on a pretend two-GPU inventory: two fit on
    the first device, the third goes to the second, each process sees only its device."""
    config = emulated_config(fast_profile_path, replicas=3)
    config.models["smollm2"].accelerator = "cuda"
    config.models["smollm2"].memory_fraction = 0.45
    rb = await start_backend(config, inventory=gpus(2))
    try:
        await rb.wait_ready(3)
        status = rb.backend.status()
        assert [r["devices"] for r in status["replicas"]] == [[0], [0], [1]]
        assert [d["reserved_fraction"] for d in status["accelerators"]["reservations"]] == [
            0.9, 0.45]
        for r in status["replicas"]:
            assert _environ(r["pid"])["CUDA_VISIBLE_DEVICES"] == str(r["devices"][0])
        assert rb.backend._free_slots(config.models["smollm2"]) == 1
        await rb.backend.remove_replica("smollm2", "smollm2-2")
        assert rb.backend.status()["accelerators"]["reservations"][1]["replicas"] == {}
    finally:
        await stop_backend(rb)
    assert all(not d["replicas"] for d in rb.backend.packer.as_dict())


async def test_a_model_asking_for_a_gpu_on_a_cpu_machine_fails_clearly(fast_profile_path) -> None:
    config = emulated_config(fast_profile_path, replicas=1)
    config.models["smollm2"].accelerator = "cuda"
    rb = await start_backend(config, inventory=Inventory("cpu", (), 2, "test: no torch"))
    try:
        for _ in range(100):
            [r] = rb.backend.status()["replicas"]
            if r["state"] == "stopped":
                break
            await asyncio.sleep(0.05)
        assert r["state"] == "stopped"
        assert "asks for cuda, but this machine has cpu" in r["detail"]
    finally:
        await stop_backend(rb)
