#!/usr/bin/env bash
# The VS Code extension (editors/vscode): install, unit tests, type-check, .vsix, and,
# where the project's venv exists (scripts/setup.sh), an end-to-end smoke test of the
# packaged bundle against the real cato-lsp and an emulated cato-backend.
# Offline-friendly: needs only the npm registry (or a warm npm cache, with
# `npm_config_offline=true`). Prints one line per step with its duration.
set -euo pipefail

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "test_vscode: '$tool' not found; install Node.js 20+ (with npm) to build the VS Code extension" >&2
    exit 127
  fi
done
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "test_vscode: Node.js 20+ needed, found $(node --version)" >&2
  exit 1
fi

root=$(cd "$(dirname "$0")/.." && pwd)
venv_bin=${CATO_VENV_BIN:-$root/.venv/bin}
cd "$root/editors/vscode"

log=$(mktemp)
trap 'rm -f "$log"' EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { local ms=$(( $(now_ms) - $1 )); printf '%d.%ds' $(( ms / 1000 )) $(( ms % 1000 / 100 )); }

# step NAME CMD...: runs CMD quietly; on failure shows its output and stops.
step() {
  local name=$1 start
  shift
  start=$(now_ms)
  if ! "$@" >"$log" 2>&1; then
    echo "test_vscode: $name FAILED after $(secs "$start"): $*" >&2
    cat "$log" >&2
    exit 1
  fi
  printf 'test_vscode: %-9s ok  %s\n' "$name" "$(secs "$start")"
}

rm -f ./*.vsix
step install npm ci --no-audit --no-fund --prefer-offline
step test npm test
step typecheck npm run typecheck
step package npm run package
echo "test_vscode: built editors/vscode/$(basename ./*.vsix)"
if [ -x "$venv_bin/cato-lsp" ] && [ -x "$venv_bin/cato-backend" ]; then
  step smoke node test/smoke/smoke.cjs "$venv_bin"
else
  echo "test_vscode: smoke     skipped (no $venv_bin/cato-lsp; run scripts/setup.sh)"
fi
