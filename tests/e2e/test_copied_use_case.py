"""A use case copied from another keeps the other's yaml `name:` but gets its own endpoint (named after its folder);
one whose `deployment:` block names an endpoint another use case owns ends in deployment.rolled_back on the first
delivery, and `genaiops wait` says so at once — the issue's crash loop (ten deliveries into the broker's DLQ, a
`wait` that timed out) cannot come back. The whole local stack: broker, host, Azurite, real flow servers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.blob import BlobServiceClient

from genaiops.follow import EXIT_FAILED_EVENT
from localstack.llm.scripted import ScriptedLLM
from localstack.stack import LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.clock import SystemClock
from shared.audit import EventJournal
from shared.events import DeploymentRequested, Event
from shared.events.codec import encode
from shared.experiments.config import load_experiment
from shared.experiments.variants import Combination, materialize
from shared.registry.blob_registry import BlobRegistry
from shared.services.registration import register_flow_if_changed
from shared.settings import EVENTS_QUEUE_SETTING
from tests.e2e.conftest import running_stack, wait_for
from tests.following import waited

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[2]
OUTCOMES = ("deployment.verified", "deployment.rolled_back")


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flows")
    for folder in ("math_coding", "template_math", "clash_math"):  # the copies still say `name: math_coding`
        shutil.copytree(ROOT / "flows" / "math_coding", root / folder)
    with (root / "clash_math" / "experiment.local.yaml").open("a") as overlay:
        overlay.write("\ndeployment:\n  endpoint_name: math-coding-local\n")
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM, flows: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("copied"), llm, GENAIOPS_FLOWS_DIR=str(flows)) as started:
        yield started


@pytest.fixture(scope="module")
def storage(stack: LocalStack) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(stack.storage_connection_string)


def deploy(stack: LocalStack, storage: BlobServiceClient, flows: Path, use_case: str,
           run: str = "") -> DeploymentRequested:
    """Register the use case's flow and post deployment.requested for it, as an approval would (`run` tells apart
    the correlation ids of several deployments of one use case)."""
    blobs = AzureBlobStore(storage)
    config = load_experiment(flows / use_case, "local")
    version, _ = register_flow_if_changed(
        BlobRegistry(blobs, SystemClock()), name=use_case.replace("_", "-"),
        flow_dir=materialize(config.flow_dir, Combination(), stack.state_dir / "registered" / use_case),
        properties={"variant": "{}", "hyperparameters": "{}", "metric.accuracy": "1"})
    request = DeploymentRequested.create({"use_case": use_case, "flow_name": version.name,
                                          "flow_version": version.version, "environment": "local"},
                                         correlation_id=f"deploy-{use_case}{run}")
    message = encode(request)
    with ServiceBusClient.from_connection_string(stack.servicebus_connection_string) as client, \
            client.get_queue_sender(stack.settings()[EVENTS_QUEUE_SETTING]) as sender:
        sender.send_messages(ServiceBusMessage(message.body, message_id=message.message_id,
                                               correlation_id=message.correlation_id, subject=message.subject))
    return request


def outcome(journal: EventJournal, request: Event) -> Event:
    return wait_for(lambda: next((event for event in journal.events_for(request.correlation_id)
                                  if event.type in OUTCOMES), None),
                    timeout=180, interval=1, what=f"the outcome of {request.payload.use_case}'s deployment")


def test_a_copy_gets_its_own_endpoint_and_one_that_takes_anothers_rolls_back_at_once(
        stack: LocalStack, storage: BlobServiceClient, flows: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = EventJournal(AzureBlobStore(storage))
    original = outcome(journal, deploy(stack, storage, flows, "math_coding"))
    copy = outcome(journal, deploy(stack, storage, flows, "template_math"))
    assert (original.type, original.payload.endpoint) == ("deployment.verified", "math-coding-local")
    assert (copy.type, copy.payload.endpoint) == ("deployment.verified", "template-math-local")

    clash = deploy(stack, storage, flows, "clash_math")
    rolled_back = outcome(journal, clash)

    assert rolled_back.type == "deployment.rolled_back"
    assert rolled_back.payload.endpoint == "math-coding-local"
    assert "endpoint math-coding-local belongs to use case math_coding, not clash_math" in rolled_back.payload.reason
    assert "Executed 'Functions.route_event' (Failed" not in stack.log_file("host").read_text()  # no retry at all
    # The owner's endpoint is untouched, and a pipeline waiting on the run fails at once with the reason.
    assert original.payload.traffic == {original.payload.deployment: 100}
    assert waited(journal, clash.correlation_id, {"deployment.verified"}, {"deployment.rolled_back"},
                  timeout=10)[0] == EXIT_FAILED_EVENT
