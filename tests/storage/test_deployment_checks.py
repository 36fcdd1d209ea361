"""A deployment on Azure ML — and a promote/retire of one — as a state machine of scheduled checks, through the
app's bus entry point, over real Azurite storage. Faked: the Azure ML SDK (autospecced operations whose entities
read "Creating"/"Updating" for a number of GETs, as in tests/unit/test_azureml_deployer.py) and the endpoint's HTTP
answers (a local server). The bus is a recorder: a scheduled check is delivered when the test clock reaches its
`not_before`."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml.entities import EndpointAuthKeys, ManagedOnlineEndpoint

from shared.adapters.promptflow_runner import PromptflowRunner
from shared.application import Application
from shared.blob_layout import DEPLOYMENTS, deployed_state_name, deployment_record_name
from shared.deployment.azureml_deployer import ManagedOnlineDeployer
from shared.deployment.port import deployment_name_for
from shared.events import DeploymentRequested, DeploymentTrafficRequested, Event
from shared.events.catalogue import DeploymentCheckRequested
from shared.events.codec import encode
from shared.experiments.config import load_experiment
from shared.experiments.variants import Combination, materialize
from shared.ports import BlobStore
from shared.registry.blob_registry import BlobRegistry
from shared.services.ab_testing import change_traffic, check_traffic_change
from shared.services.deployments import DeploymentWorkspace, check_deployment
from shared.services.registration import register_flow_if_changed
from shared.settings import Settings
from shared.smoke.tester import SmokeTester
from tests.fakes.memory import ManualClock
from tests.unit.test_azureml_deployer import Azure, autospec_client

pytestmark = pytest.mark.azurite
ROOT = Path(__file__).resolve().parents[2]
PRIOR = "blue"


class ScoringServer:
    """The endpoint's scoring URI: 503 for the first `not_ready` requests (the container still starting), then
    the flow's outputs. Records each request's headers."""

    def __init__(self, not_ready: int) -> None:
        self.not_ready, self.headers = not_ready, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                if len(server.headers) <= server.not_ready:
                    status, body = 503, b'{"error": "starting"}'
                else:
                    status, body = 200, json.dumps({"answer": "391", "reasoning": "17 * 23 = 391"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/score"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@dataclass
class Bus:
    """Delivers what the app publishes, in order; a scheduled event waits for the test clock."""

    app: Application
    clock: ManualClock
    queue: list[Event] = field(default_factory=list)
    delivered: list[Event] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    published_at: dict[str, datetime] = field(default_factory=dict)  # event id -> the test clock then

    def publish(self, events: Any) -> None:
        self.queue.extend(events)
        self.published_at.update({event.id: self.clock.current for event in events})

    def run(self, first: Event, limit: int = 200) -> list[Event]:
        self.queue.append(first)
        while self.queue and len(self.delivered) < limit:
            event = self.queue.pop(0)
            due = event.not_before()
            if due is not None and due > self.clock.current:
                self.clock.current = due  # the broker holds it until then
            started = time.monotonic()
            self.app.on_bus_message(encode(event).body, message_id=event.id, delivery_count=1, properties={})
            self.durations.append(time.monotonic() - started)
            self.delivered.append(event)
        return self.delivered


@dataclass
class World:
    bus: Bus
    azure: Azure
    client: Any
    server: ScoringServer
    workspace: DeploymentWorkspace
    registry: BlobRegistry
    use_case: str
    flow_name: str
    version: str


@pytest.fixture
def world(request: pytest.FixtureRequest, blob_store: BlobStore, clock: ManualClock, tmp_path: Path,
          unique: str) -> Iterator[World]:
    options = getattr(request, "param", {})
    use_case = f"uc_{unique}"
    shutil.copytree(ROOT / "flows" / "math_coding", tmp_path / "flows" / use_case)
    (tmp_path / "flows" / use_case / "experiment.dev.yaml").write_text(
        "deployment:\n  target: aml_managed\n  endpoint_name: math-coding-dev\n  traffic: {new: 30, current: 70}\n"
        f"  smoke: {{samples: 2, latency_budget_ms: 5000, "
        f"readiness_timeout_seconds: {options.get('readiness', 300)}}}\n")
    registry = BlobRegistry(blob_store, clock)
    config = load_experiment(tmp_path / "flows" / use_case, "dev")
    flow_dir = materialize(config.flow_dir, Combination(), tmp_path / "registered")
    version, _ = register_flow_if_changed(registry, name=f"flow-{unique}", flow_dir=flow_dir, properties={
        "variant": "{}", "hyperparameters": "{}", "metric.accuracy": "0.9"})

    server = ScoringServer(not_ready=options.get("not_ready", 2))
    client = autospec_client()
    azure = Azure(client, ManagedOnlineEndpoint(name="math-coding-dev", traffic={PRIOR: 100}, scoring_uri=server.url,
                                                provisioning_state="Succeeded"),
                  progress=options.get("progress", 3))
    client.online_endpoints.get_keys.return_value = EndpointAuthKeys(primary_key="endpoint-key")
    deployer = ManagedOnlineDeployer(client, work_dir=tmp_path / "aml",
                                     app_settings={"AOAI_API_BASE": "https://aoai-genaiops.openai.azure.com/"})
    workspace = DeploymentWorkspace(flows_root=tmp_path / "flows", work_root=tmp_path / "work",
                                    deployer_for=lambda _: deployer, tester=SmokeTester(blob_store, clock),
                                    app_settings={}, local_stack=False,
                                    operation_timeout_seconds=options.get("timeout", 1800))
    bus = Bus(app=None, clock=clock)  # type: ignore[arg-type]
    # A traffic request names no environment: the app's own (GENAIOPS_ENV) picks the deployment block.
    bus.app = Application(Settings(environment="dev"), blob_store, bus, clock, PromptflowRunner(), registry, workspace)
    yield World(bus, azure, client, server, workspace, registry, use_case, f"flow-{unique}", version.version)
    server.http.shutdown()


def requested(world: World) -> DeploymentRequested:
    return DeploymentRequested.create({"use_case": world.use_case, "flow_name": world.flow_name,
                                       "flow_version": world.version, "environment": "dev"},
                                      correlation_id=f"run-{world.use_case}")


def test_a_deployment_whose_operations_take_several_checks_is_verified(world: World,
                                                                       blob_store: BlobStore) -> None:
    start = world.bus.clock.current
    events = world.bus.run(requested(world))

    types = [event.type for event in events]
    checks = [event for event in events if isinstance(event, DeploymentCheckRequested)]
    assert types[0] == "deployment.requested"
    assert types[-1] == "deployment.verified", types
    # deployment: 3 GETs read "Creating"; readiness: 2 answers 503; traffic: 3 GETs read "Updating".
    assert len(checks) == 8
    assert [check.payload.attempt for check in checks] == list(range(1, 9))
    assert {"deployment.completed", "smoke.passed"} <= set(types)
    assert "deployment.rolled_back" not in types
    # Bounded back-off: 15 s, then doubling to one a minute; every check is scheduled, none waited on.
    gaps = [(check.payload.not_before - world.bus.published_at[check.id]).total_seconds() for check in checks]
    assert gaps == [15, 30, 60, 15, 30, 15, 30, 60]  # per step: deployment, readiness, traffic
    assert (world.bus.clock.current - start).total_seconds() > 5 * 15
    verified = events[-1]
    assert verified.payload.traffic == {PRIOR: 70, deployment_name_for(world.version): 30}
    world.client.online_deployments.begin_create_or_update.assert_called_once()
    # Smoke requests were pinned to the new deployment and carried the endpoint key.
    assert all(h.get("azureml-model-deployment") == verified.payload.deployment for h in world.server.headers)
    assert all(h.get("authorization") == "Bearer endpoint-key" for h in world.server.headers)
    production = json.loads(blob_store.read(DEPLOYMENTS, deployed_state_name(world.use_case))[0])
    assert production["flow_version"] == world.version
    record = json.loads(blob_store.read(DEPLOYMENTS, deployment_record_name(world.use_case, events[0].id))[0])
    assert record["step"] == "verified"
    assert max(world.bus.durations) < 30  # no invocation waits for Azure

    # A stale re-check (redelivered long after) changes nothing.
    assert check_deployment(checks[2], blob_store, world.registry, world.workspace, world.bus.clock) == []


@pytest.mark.parametrize("world", [{"progress": 10_000, "timeout": 600}], indirect=True)
def test_a_deployment_past_its_deadline_rolls_back_and_the_prior_keeps_its_traffic(world: World) -> None:
    events = world.bus.run(requested(world))

    types = [event.type for event in events]
    assert types[-1] == "deployment.rolled_back", types
    assert "deployment.completed" not in types
    rolled_back = events[-1].payload
    assert "not finished after 600 s" in rolled_back.reason
    assert rolled_back.traffic == {PRIOR: 100}
    assert world.azure.endpoint.traffic.get(PRIOR) == 100
    world.client.online_endpoints.begin_create_or_update.assert_not_called()  # traffic never touched
    checks = [event for event in events if isinstance(event, DeploymentCheckRequested)]
    assert 10 <= len(checks) <= 15  # 600 s at 15, 30, 60, 60, ... s


@pytest.mark.parametrize("world", [{"progress": 0, "not_ready": 10_000, "readiness": 120}], indirect=True)
def test_a_deployment_that_never_answers_fails_its_smoke_test_and_rolls_back(world: World,
                                                                            blob_store: BlobStore) -> None:
    events = world.bus.run(requested(world))

    types = [event.type for event in events]
    assert types[-3:] == ["deployment.check_requested", "smoke.failed", "deployment.rolled_back"] or \
        types[-2:] == ["smoke.failed", "deployment.rolled_back"], types
    assert "deployment.completed" in types
    failed = next(event for event in events if event.type == "smoke.failed").payload
    assert "readiness_timeout_seconds = 120" in failed.failures[0]
    assert events[-1].payload.traffic == {PRIOR: 100, failed.deployment: 0}


# --- promote / retire: deployment.traffic_requested, finished by scheduled checks ------------------------------------

NEW = "green"


def traffic_requested(world: World, action: str = "promote", deployment: str = NEW) -> DeploymentTrafficRequested:
    return DeploymentTrafficRequested.create({"use_case": world.use_case, "endpoint": "math-coding-dev",
                                              "deployment": deployment, "action": action},
                                             correlation_id=f"traffic-{world.use_case}")


def serving_two(world: World, *, stale_state: str = "Updating") -> list[dict[str, int]]:
    """The endpoint serves PRIOR 70 / NEW 30. A traffic update reads `stale_state` with the old split for
    `progress` GETs, then the new split. Returns the splits sent, as they are sent."""
    old = {PRIOR: 70, NEW: 30}
    world.azure.endpoint.traffic = dict(old)
    put, sent = world.client.online_endpoints.begin_create_or_update.side_effect, []

    def put_then_read(endpoint: Any, **kwargs: Any) -> Any:
        sent.append(dict(endpoint.traffic))
        answer = put(endpoint, **kwargs)
        # The fake's GET hands out its stored entity, which the deployer edited before the PUT; the service's
        # entity keeps the old split until the update lands.
        world.azure.endpoint.traffic, world.azure.endpoint._provisioning_state = dict(old), stale_state
        return answer

    world.client.online_endpoints.begin_create_or_update.side_effect = put_then_read
    return sent


@pytest.mark.parametrize("stale_state", ["Updating", "Succeeded"])
@pytest.mark.parametrize("world", [{"progress": 4}], indirect=True)
def test_a_promotion_is_started_and_finished_by_scheduled_checks(world: World, blob_store: BlobStore,
                                                                 stale_state: str) -> None:
    sent = serving_two(world, stale_state=stale_state)
    request = traffic_requested(world)

    events = world.bus.run(request)

    types = [event.type for event in events]
    assert types == ["deployment.traffic_requested", *["deployment.check_requested"] * 4,
                     "deployment.traffic_changed"], types
    checks = [event for event in events if isinstance(event, DeploymentCheckRequested)]
    assert {check.payload.kind for check in checks} == {"traffic"}
    assert [check.payload.attempt for check in checks] == [1, 2, 3, 4]
    gaps = [(check.payload.not_before - world.bus.published_at[check.id]).total_seconds() for check in checks]
    assert gaps == [15, 30, 60, 60]  # the endpoint read the old split for 4 polls; none was waited on
    changed = events[-1]
    assert changed.payload.traffic == {PRIOR: 0, NEW: 100}
    assert changed.correlation_id == request.correlation_id
    assert sent == [{PRIOR: 0, NEW: 100}]  # one PUT, never repeated
    assert max(world.bus.durations) < 5  # every invocation returns at once
    record = json.loads(blob_store.read(DEPLOYMENTS, deployment_record_name(world.use_case, request.id))[0])
    assert (record["kind"], record["outcome"]) == ("traffic", "changed")

    # Redelivered once it is over, the request and an old check change nothing.
    assert change_traffic(request, blob_store, world.workspace, world.bus.clock, "dev") == []
    assert check_traffic_change(checks[1], blob_store, world.workspace, world.bus.clock, "dev") == []
    world.client.online_endpoints.begin_create_or_update.assert_called_once()


@pytest.mark.parametrize("world", [{"progress": 4}], indirect=True)
def test_a_traffic_request_redelivered_while_pending_resends_its_check_and_starts_nothing(
        world: World, blob_store: BlobStore) -> None:
    serving_two(world)
    request, clock = traffic_requested(world), world.bus.clock

    first = change_traffic(request, blob_store, world.workspace, clock, "dev")
    again = change_traffic(request, blob_store, world.workspace, clock, "dev")

    assert [event.type for event in first] == ["deployment.check_requested"]
    assert again == first  # the very same follow-up (same id): the broker drops the duplicate
    world.client.online_endpoints.begin_create_or_update.assert_called_once()


@pytest.mark.parametrize("world", [{"progress": 1}], indirect=True)
def test_a_retirement_gives_the_share_back_to_the_prior(world: World) -> None:
    serving_two(world)

    events = world.bus.run(traffic_requested(world, "retire"))

    assert [event.type for event in events][-1] == "deployment.traffic_changed"
    assert events[-1].payload.traffic == {PRIOR: 100, NEW: 0}


@pytest.mark.parametrize("world", [{"progress": 10_000, "timeout": 600}], indirect=True)
def test_a_traffic_update_past_its_deadline_fails_with_the_split_the_endpoint_reports(world: World) -> None:
    serving_two(world)

    events = world.bus.run(traffic_requested(world))

    assert events[-1].type == "deployment.traffic_failed", [event.type for event in events]
    failed = events[-1].payload
    assert "not finished after 600 s" in failed.reason
    assert (failed.action, failed.deployment, failed.traffic) == ("promote", NEW, {PRIOR: 70, NEW: 30})
    checks = [event for event in events if isinstance(event, DeploymentCheckRequested)]
    assert 10 <= len(checks) <= 15  # 600 s at 15, 30, 60, 60, ... s
    assert "deployment.traffic_changed" not in [event.type for event in events]


def test_a_traffic_request_for_an_unknown_deployment_fails_at_once(world: World) -> None:
    serving_two(world)

    events = world.bus.run(traffic_requested(world, deployment="purple"))

    assert [event.type for event in events] == ["deployment.traffic_requested", "deployment.traffic_failed"]
    assert "has no deployment purple" in events[-1].payload.reason
    assert events[-1].payload.traffic == {PRIOR: 70, NEW: 30}
    world.client.online_endpoints.begin_create_or_update.assert_not_called()
