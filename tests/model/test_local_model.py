"""The real small model behind the OpenAI-compatible API (localstack/llm/model_server.mjs on node-llama-cpp), started
exactly as the local stack starts it.

Needs `make install model`; skipped otherwise. Each test is bounded by a timeout: loading the model takes about a
second and a short completion about a second on 2 idle cores (ten times that on a busy machine).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from openai.types import CompletionUsage

from localstack.llm import local_model
from localstack.stack import free_port, port_is_open

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(not local_model.is_installed(),
                       reason="local model not installed (missing: "
                              f"{', '.join(local_model.missing_parts())}); {local_model.INSTALL_HINT}"),
]

REQUEST_TIMEOUT_SECONDS = 120
ARITHMETIC = [{"role": "system", "content": "You are a calculator. Reply with the result only."},
              {"role": "user", "content": "What is 2+3? Answer with a number only."}]
RAINBOW = [{"role": "user", "content": "Name one colour of the rainbow."}]


class Server:
    def __init__(self, log_path: Path, *, cache_size: int = 0) -> None:
        """`cache_size` 0 (the default here): every request is generated, so tests of generation test generation."""
        self.port = free_port()
        self.base_url = local_model.base_url(self.port)
        self.log_path = log_path
        command = local_model.server_command(self.port, cache_size=cache_size)
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
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

    def answer(self, messages: list[dict[str, str]], **options: object) -> str:
        completion = self.client().chat.completions.create(model=local_model.MODEL_ALIAS, messages=messages,
                                                           **{"max_tokens": 16, **options})
        return completion.choices[0].message.content or ""

    def ask(self, messages: list[dict[str, str]], **options: object) -> tuple[str, str, CompletionUsage | None]:
        """(answer, the x-cache header, usage) of one plain request."""
        raw = self.client().chat.completions.with_raw_response.create(
            model=local_model.MODEL_ALIAS, messages=messages, **{"max_tokens": 16, "temperature": 0, **options})
        completion = raw.parse()
        return completion.choices[0].message.content or "", raw.headers["x-cache"], completion.usage


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("local-model") / "server.log")
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture(scope="module")
def remembering_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Started as the local stack starts it: answers remembered."""
    running = Server(tmp_path_factory.mktemp("local-model") / "server.log", cache_size=2)
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
def test_runtime_is_the_pinned_prebuilt_cpu_build_without_gpu_variants() -> None:
    pins = json.loads((local_model.NODE_MODULES.parent / "package.json").read_text())["dependencies"]
    for name in local_model.RUNTIME_PACKAGES:
        installed = json.loads((local_model.NODE_MODULES / name / "package.json").read_text())
        assert installed["version"] == pins[name]
    gpu_builds = list((local_model.NODE_MODULES / "@node-llama-cpp").glob("*-cuda*")) + list(
        (local_model.NODE_MODULES / "@node-llama-cpp").glob("*-vulkan"))
    assert gpu_builds == [], "install with `npm ci --omit=optional` (make install)"


@pytest.mark.timeout(120)
def test_lists_the_model_alias(server: Server) -> None:
    models = server.client().models.list()
    assert [model.id for model in models.data] == [local_model.MODEL_ALIAS]


@pytest.mark.timeout(120)
def test_chat_completion_answers_with_usage(server: Server) -> None:
    completion = server.client().chat.completions.create(
        model=local_model.MODEL_ALIAS, messages=ARITHMETIC, temperature=0, max_tokens=16, seed=7)

    text = completion.choices[0].message.content or ""
    assert completion.choices[0].finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 10
    assert usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert "5" in text  # SmolLM2-135M gets this one right at temperature 0


@pytest.mark.timeout(120)
def test_max_tokens_cuts_the_answer_with_finish_reason_length(server: Server) -> None:
    completion = server.client().chat.completions.create(
        model=local_model.MODEL_ALIAS, messages=RAINBOW, temperature=0, max_tokens=3)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


@pytest.mark.timeout(120)
def test_streamed_chat_completion(server: Server) -> None:
    """promptflow's pf.test streams the llm node's answer."""
    stream = server.client().chat.completions.create(
        model=local_model.MODEL_ALIAS, temperature=0, max_tokens=16, stream=True, messages=RAINBOW,
        stream_options={"include_usage": True})

    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) > 2  # really streamed
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert text == server.answer(RAINBOW, temperature=0)  # the same answer as without streaming


@pytest.mark.timeout(120)
def test_azure_openai_route_answers_any_deployment_with_the_local_model(server: Server) -> None:
    from openai import AzureOpenAI

    azure = AzureOpenAI(azure_endpoint=local_model.azure_endpoint(server.port), api_key="any",
                        api_version="2024-02-01", max_retries=0, timeout=REQUEST_TIMEOUT_SECONDS)
    completion = azure.chat.completions.create(model="gpt-35-turbo", messages=ARITHMETIC, temperature=0,
                                               max_tokens=16)

    assert completion.choices[0].message.content == server.answer(ARITHMETIC, temperature=0)


@pytest.mark.timeout(240)
def test_same_answer_at_temperature_zero_and_for_a_sampled_request_with_the_same_seed(server: Server) -> None:
    assert len({server.answer(ARITHMETIC, temperature=0) for _ in range(2)}) == 1
    assert len({server.answer(RAINBOW, temperature=1.0) for _ in range(2)}) == 1  # the server's default seed


@pytest.mark.timeout(240)
def test_concurrent_requests_queue_and_each_gets_its_own_answer(server: Server) -> None:
    questions = [ARITHMETIC, RAINBOW]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda messages: server.answer(messages, temperature=0), questions))

    assert together == [server.answer(messages, temperature=0) for messages in questions]


@pytest.mark.timeout(600)
def test_requests_whose_client_gave_up_are_dropped_not_generated(server: Server) -> None:
    """A flow line that times out abandons its request: the model must not keep generating it for nobody."""
    from openai import APITimeoutError, OpenAI

    counting = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
    started = time.monotonic()
    assert server.client().chat.completions.create(model=local_model.MODEL_ALIAS, messages=counting, temperature=0,
                                                   max_tokens=512).usage.completion_tokens > 50
    one_long_answer = time.monotonic() - started
    impatient = OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=0.5)
    for seed in range(3):
        with pytest.raises(APITimeoutError):
            impatient.chat.completions.create(model=local_model.MODEL_ALIAS, messages=counting, temperature=0,
                                              max_tokens=512, seed=seed)

    started = time.monotonic()
    assert server.answer(RAINBOW, temperature=0, max_tokens=4)
    # generated for nobody, the three abandoned answers would hold this one back for about 3 x one_long_answer
    assert time.monotonic() - started < one_long_answer


@pytest.mark.timeout(60)
def test_bad_requests_are_refused_with_400(server: Server) -> None:
    from openai import BadRequestError

    with pytest.raises(BadRequestError, match="messages"):
        server.client().chat.completions.create(model=local_model.MODEL_ALIAS, messages=[])
    with pytest.raises(BadRequestError, match="role"):
        server.answer([{"role": "narrator", "content": "hello"}])


@pytest.mark.timeout(60)
def test_server_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = Server(tmp_path / "server.log")
    assert server.client().models.list().data

    code = server.stop()

    assert code == 0, server.log()
    assert "shutdown complete" in server.log()
    assert not port_is_open(server.port)
    assert not local_model.is_ready(server.base_url)


@pytest.mark.timeout(240)
def test_a_repeated_request_is_answered_from_memory_with_the_same_answer(remembering_server: Server) -> None:
    first, first_source, first_usage = remembering_server.ask(ARITHMETIC)
    again, again_source, again_usage = remembering_server.ask(ARITHMETIC)

    assert (first_source, again_source) == ("miss", "hit")
    assert again == first
    assert again_usage == first_usage
    assert remembering_server.ask(ARITHMETIC, max_tokens=15)[1] == "miss"  # any generation option is part of the key
    assert "(remembered)" in remembering_server.log()


@pytest.mark.timeout(240)
def test_a_streamed_repeat_is_answered_from_memory_in_one_chunk(remembering_server: Server) -> None:
    question = [{"role": "user", "content": "Name one fruit."}]
    generated = remembering_server.ask(question)[0]

    stream = remembering_server.client().chat.completions.create(
        model=local_model.MODEL_ALIAS, messages=question, temperature=0, max_tokens=16, stream=True)
    pieces = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]

    assert pieces == [generated]


@pytest.mark.timeout(240)
def test_memory_keeps_only_the_most_recently_used_answers(remembering_server: Server) -> None:
    """The fixture remembers 2 answers: asking a third forgets the one used least recently."""
    questions = [[{"role": "user", "content": f"Spell the number {n}."}] for n in (1, 2, 3)]
    for question in questions[:2]:
        remembering_server.ask(question)
    assert remembering_server.ask(questions[0])[1] == "hit"  # now 2 is the least recently used

    remembering_server.ask(questions[2])

    assert remembering_server.ask(questions[0])[1] == "hit"
    assert remembering_server.ask(questions[1])[1] == "miss"


@pytest.mark.timeout(600)
def test_an_answer_cut_short_by_a_client_that_left_is_not_remembered(remembering_server: Server) -> None:
    from openai import APITimeoutError, OpenAI

    counting = [{"role": "user", "content": "Count from 1 to 500, separated by commas."}]
    impatient = OpenAI(base_url=remembering_server.base_url, api_key="k", max_retries=0, timeout=1.0)
    with pytest.raises(APITimeoutError):
        impatient.chat.completions.create(model=local_model.MODEL_ALIAS, messages=counting, temperature=0,
                                          max_tokens=256)

    _, source, usage = remembering_server.ask(counting, max_tokens=256)

    assert source == "miss"
    assert usage is not None
    assert usage.completion_tokens > 50
