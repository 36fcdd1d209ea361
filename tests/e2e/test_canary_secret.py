"""A canary secret never leaves the process (issue 12).

The flows' LLM key is a unique canary; the scripted LLM refuses some lines with a 401 that echoes the key back,
as OpenAI does. After the experiment has run (and failed on those lines) through the whole local stack, every
blob in Azurite and every file the stack wrote (host, broker and Azurite logs, the broker's data) is scanned:
the canary is nowhere, and the failure is recorded with the key masked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from localstack.llm.scripted import InvalidApiKey, Messages, ScriptedLLM, arithmetic_responder, scripted_llm
from localstack.stack import LocalStack
from shared.redaction import REDACTED
from tests.e2e.conftest import running_stack
from tests.e2e.test_durable_experiments import journal, outcome, request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
CANARY = f"canary{uuid.uuid4().hex}"  # looks like no credential: only masking by value can catch it
REFUSAL = "Incorrect API key provided: "


def refuse_multiplications(messages: Messages) -> str:
    """Multiplication questions are refused as with a wrong key; the rest answered, so the run has both."""
    if "*" in str(messages[-1].get("content", "")):
        raise InvalidApiKey
    return arithmetic_responder(messages)


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with scripted_llm(refuse_multiplications) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("canary"), llm, AOAI_API_KEY=CANARY) as started:
        yield started


def every_blob(storage: BlobServiceClient) -> Iterator[tuple[str, bytes]]:
    for container in storage.list_containers():
        client = storage.get_container_client(container.name)
        for blob in client.list_blobs():
            yield f"{container.name}/{blob.name}", client.download_blob(blob.name).readall()


def every_file(state_dir: Path) -> Iterator[tuple[Path, bytes]]:
    """Everything the stack wrote, but the settings file it was given (which holds the key by design)."""
    for path in sorted(state_dir.rglob("*")):
        if path.is_file() and path.name != "local.settings.json":
            yield path, path.read_bytes()


def test_the_canary_key_appears_in_no_blob_and_no_log_line(stack: LocalStack, llm: ScriptedLLM) -> None:
    [requested] = request(stack, "math_coding")
    final = outcome(stack, requested)

    # The key really went out and came back in 401 answers, and the run failed on those lines.
    assert f"bearer {CANARY}" in llm.credentials
    assert final.type == "experiment.failed", final.payload
    storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    blobs = dict(every_blob(storage))
    experiment = str(final.payload.experiment_id)
    results = blobs[f"reports/math_coding/{experiment}/results.csv"].decode()
    assert f"{REFUSAL}{REDACTED}" in results
    assert f"{REFUSAL}{REDACTED}" in blobs[f"reports/math_coding/{experiment}/summary.html"].decode()
    assert journal(stack, requested.correlation_id)  # events were journaled (and scanned below)

    leaking_blobs = [name for name, data in blobs.items() if CANARY.encode() in data]
    assert not leaking_blobs
    files = dict(every_file(stack.state_dir))
    assert any(path.suffix == ".log" for path in files)
    leaking_lines = [f"{path.name}: {line[:200]!r}" for path, data in files.items()
                     for line in data.splitlines() if CANARY.encode() in line]
    assert not leaking_lines, f"{len(leaking_lines)} lines leak the key, e.g. {leaking_lines[:3]}"
    # The refusals were logged, masked: the logs were not merely silent.
    host_log = stack.log_file("host").read_text(errors="replace")
    assert f"{REFUSAL}{REDACTED}" in host_log
