"""The lifecycle on the local stack with the real small model (SmolLM2-135M via llama.cpp) behind the flows'
connection — the same stack `make demo` starts. The model is weak at arithmetic, so this checks the plumbing
and the token accounting, not the accuracy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from localstack.llm import local_model
from localstack.stack import LocalStack, Ports
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from shared.services.intake import dataset_uploaded_event
from tests.e2e.conftest import wait_for

pytestmark = [
    pytest.mark.e2e, pytest.mark.model, pytest.mark.timeout(600),
    pytest.mark.skipif(not local_model.is_installed(), reason=local_model.INSTALL_HINT),
]
DATA = Path(__file__).resolve().parents[2] / "flows" / "math_coding" / "data" / "math_test.jsonl"


@pytest.fixture(scope="module")
def model_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(state_dir=tmp_path_factory.mktemp("model-stack"), ports=Ports.free(), with_model=True)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def test_upload_runs_every_combination_against_the_real_model(model_stack: LocalStack) -> None:
    storage = BlobServiceClient.from_connection_string(model_stack.storage_connection_string)
    lines = DATA.read_bytes().splitlines(keepends=True)[:3]  # a small replacement upload keeps this quick
    content = b"".join(lines)
    etag = storage.get_blob_client("datasets", "math_coding/math_test.jsonl").upload_blob(
        content, overwrite=True)["etag"]
    upload = dataset_uploaded_event("datasets", "math_coding/math_test.jsonl", len(content), etag)
    assert upload is not None
    journal = EventJournal(AzureBlobStore(storage))

    def outcome() -> object:
        return next((e for e in journal.events_for(upload.correlation_id)
                     if e.type in ("evaluation.completed", "experiment.failed")), None)

    final = wait_for(outcome, timeout=540, interval=2, what="the experiment against the real model")
    assert final.type == "evaluation.completed", final.payload
    assert len(final.payload.runs) == 4
    assert all(run.lines == 3 and run.failed_lines == 0 for run in final.payload.runs)
    assert all(0.0 <= run.metrics["accuracy"] <= 1.0 for run in final.payload.runs)

    report_prefix = final.payload.report_uri.removeprefix("reports/").rsplit("/", 1)[0]
    experiment = json.loads(storage.get_blob_client("reports", f"{report_prefix}/experiment.json")
                            .download_blob().readall())
    answers = [line["outputs"]["reasoning"] for run in experiment["standard_runs"] for line in run["lines"]]
    assert all(answer.strip() for answer in answers)  # the model really answered every line
    assert all(line["tokens"] > 0 for run in experiment["standard_runs"] for line in run["lines"])
