"""What the production e2e tests share: a copy of math_coding under another name with a `monitoring:` overlay,
its first version and a second one made by changing its answer step, both deployed; users' questions through the
endpoint's router, and the events the timer's runs journaled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import requests
from azure.storage.blob import BlobServiceClient

from localstack.stack import LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from shared.blob_layout import AUDIT, DEPLOYMENTS
from shared.events import Event
from tests.e2e.test_copied_use_case import deploy, outcome

ROOT = Path(__file__).resolve().parents[2]
ANSWER_STEP_END = '\n    return value[:-2] if value.endswith(".0") else value\n'


def monitored_copy(root: Path, use_case: str, overlay: str) -> Path:
    """`root` as a flows folder holding math_coding as `use_case`, its local overlay extended with `overlay`."""
    shutil.copytree(ROOT / "flows" / "math_coding", root / use_case)
    with (root / use_case / "experiment.local.yaml").open("a") as local:
        local.write(overlay)
    return root


def change_answer_step(flows: Path, use_case: str, new_end: str) -> None:
    """The next version: the answer step's last line replaced by `new_end` (a wrong or failing answer)."""
    step = flows / use_case / "flows" / "standard" / "extract_answer.py"
    source = step.read_text()
    step.write_text(source.replace(ANSWER_STEP_END, new_end))
    assert step.read_text() != source


def deploy_two_versions(stack: LocalStack, storage: BlobServiceClient, journal: EventJournal, flows: Path,
                        use_case: str, new_end: str, run: str) -> tuple[Event, Event]:
    """The use case's first version verified, then the next (answer step ending in `new_end`, uploaded as `run`)
    verified beside it: their deployment.verified events."""
    first = outcome(journal, deploy(stack, storage, flows, use_case))
    assert first.type == "deployment.verified", first
    change_answer_step(flows, use_case, new_end)
    second = outcome(journal, deploy(stack, storage, flows, use_case, run=run))
    assert second.type == "deployment.verified", second
    return first, second


def router_url(blobs: AzureBlobStore, use_case: str, endpoint: str) -> str:
    """The local endpoint's A/B router, from the deployment record."""
    state = json.loads(blobs.read(DEPLOYMENTS, f"{use_case}/{endpoint}.json")[0])
    return f"http://127.0.0.1:{state['router_port']}"


def ask_the_router(router: str, count: int) -> list[requests.Response]:
    """`count` users' questions through `router`; every other one has an answer of a million or more."""
    questions = [f"What is {i} * {1_000_000 if i % 2 else 1}?" for i in range(1, count + 1)]
    return [requests.post(f"{router}/score", json={"question": question}, timeout=60) for question in questions]


def journaled(blobs: AzureBlobStore, run_prefix: str, event_type: str) -> list[Event]:
    """Events of `event_type` in every run whose correlation id starts with `run_prefix` (the timer's runs)."""
    journal = EventJournal(blobs)
    runs = {info.name.split("/", 1)[0] for info in blobs.list(AUDIT, run_prefix)}
    return [event for run in sorted(runs) for event in journal.events_for(run) if event.type == event_type]
