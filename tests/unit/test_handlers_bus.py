"""The fast handler tier: every handler of shared/handlers.py, through the message bus as the application builds it
(injection, idempotency, failure events), over in-memory ports — no Azurite, no broker, no flow run. The storage,
flows and e2e suites run the same handlers on the real services."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from shared.application import Application
from shared.approvals.models import NotAnApprover
from shared.blob_layout import DATASETS, FEEDBACK
from shared.bootstrap import build_deployments
from shared.events import (
    ApprovalGranted,
    DeploymentRequested,
    DeploymentTrafficRequested,
    EvaluationCompleted,
    Event,
    ExperimentRequested,
    FlowRegistered,
    GatePassed,
    PipelineTriggered,
)
from shared.events.catalogue import DeploymentCheckRequested
from shared.events.commands import DecideApproval, ExpireApprovals, SubmitFeedback
from shared.events.monitoring import ProductionEvaluationRequested
from shared.experiments.results import ExperimentResult
from shared.feedback.submissions import Feedback, FeedbackRejected
from shared.handlers import HANDLERS
from shared.idempotency import PayloadMismatch
from shared.messagebus import MessageBus, inject
from shared.registry.blob_registry import BlobRegistry
from shared.services.approvals import ApprovalSettings, get_approval
from shared.services.intake import dataset_uploaded_event
from shared.settings import Settings
from tests.fakes.bus import ROOT, Ports, UnreachableModel, in_memory_ports
from tests.fakes.memory import ManualClock, MemoryBlobStore, RecordingNotifier, RecordingPublisher
from tests.feedback_endpoints import Directory
from tests.unit import test_alerts as alerts

APPROVERS = ["alice@contoso.com", "bob@contoso.com"]
DRIVES: dict[str, str] = {}  # handler name -> the test below that drives it through the bus
T = TypeVar("T", bound=Callable[..., None])


def drives(*handlers: str) -> Callable[[T], T]:
    def mark(test: T) -> T:
        DRIVES.update(dict.fromkeys(handlers, test.__name__))
        return test
    return mark


@pytest.fixture
def ports(tmp_path: Path, clock: ManualClock) -> Ports:
    return in_memory_ports(tmp_path, clock, approvals=ApprovalSettings(approvers=APPROVERS,
                                                                       app_service_auth_enabled=True))


def handled(ports: Ports, message: Event) -> list[Event]:
    result = ports.handle(message)
    assert result.handler in DRIVES
    return list(result.published)


def types(events: Sequence[Event]) -> list[str]:
    return [event.type for event in events]


# --- the bootstrap ------------------------------------------------------------------------------------------------

def test_a_handler_gets_exactly_the_dependencies_it_names() -> None:
    def handler(event: Event, *, blobs: str, clock: str) -> list[Event]:
        return []

    bound = inject(handler, {"blobs": "b", "clock": "c", "settings": "s"})
    assert isinstance(bound, functools.partial)
    assert bound.keywords == {"blobs": "b", "clock": "c"}
    with pytest.raises(TypeError, match="handler needs clock, which the bootstrap does not provide"):
        inject(handler, {"blobs": "b"})


def test_a_bus_missing_a_dependency_fails_when_it_is_built(ports: Ports) -> None:
    with pytest.raises(TypeError, match="does not provide"):
        MessageBus(publisher=ports.publisher, idempotency=ports.bus().idempotency, dependencies={})


# --- events -----------------------------------------------------------------------------------------------------

@drives("on_dataset_uploaded")
def test_dataset_uploaded_registers_the_data_and_asks_for_experiments(ports: Ports) -> None:
    data = (ROOT / "flows" / "math_coding" / "data" / "math_train.jsonl").read_bytes()
    etag = ports.blobs.write(DATASETS, "math_coding/math_train.jsonl", data)
    event = dataset_uploaded_event(DATASETS, "math_coding/math_train.jsonl", len(data), etag)
    assert event is not None
    published = handled(ports, event)
    assert types(published)[0] == "data.registered"
    assert set(types(published)[1:]) == {"experiment.requested"}
    assert handled(ports, event) == published  # a redelivery re-sends the stored follow-ups


@drives("on_pipeline_triggered")
def test_pipeline_triggered_asks_for_one_experiment_per_use_case(ports: Ports) -> None:
    trigger = PipelineTriggered.create({"pipeline": "pr", "run_id": "17", "environment": "dev",
                                        "use_cases": ["math_coding"]}, correlation_id="run-1")
    [requested] = handled(ports, trigger)
    assert (requested.type, requested.payload.use_case, requested.causation_id) == (
        "experiment.requested", "math_coding", trigger.id)


@drives("on_experiment_requested", "on_experiment_item_requested", "on_experiment_stage_completed")
def test_an_experiment_runs_item_by_item_to_its_end(ports: Ports) -> None:
    """experiment.requested -> items -> stage completed, each through the bus: every run fails to start here, so the
    experiment ends in experiment.failed with the reason."""
    queue: list[Event] = [ExperimentRequested.create({"use_case": "math_coding", "environment": "local"},
                                                     correlation_id="run-1")]
    seen: list[str] = []
    while queue:
        event = queue.pop(0)
        if event.type in ("experiment.requested", "experiment.item_requested", "experiment.stage_completed"):
            queue += handled(ports, event)
        seen.append(event.type)
    assert {"experiment.item_requested", "experiment.stage_completed"} <= set(seen)
    assert seen[-1] == "experiment.failed"


@drives("on_evaluation_completed")
def test_evaluation_completed_judges_the_experiment(ports: Ports) -> None:
    ports.experiments.store.save_result(ExperimentResult(
        experiment_id="e1", use_case="math_coding", environment="local", status="completed", standard_runs=[],
        started_at=ports.clock.now(), finished_at=ports.clock.now()))
    done = EvaluationCompleted.create({"use_case": "math_coding", "experiment_id": "e1", "runs": [],
                                       "report_uri": "reports/math_coding/e1/summary.html"}, correlation_id="run-1")
    [verdict] = handled(ports, done)
    assert verdict.type == "gate.failed"
    assert verdict.payload.reasons


@drives("on_gate_passed")
def test_gate_passed_of_a_missing_use_case_ends_the_experiment(ports: Ports) -> None:
    ports.experiments.store.save_result(ExperimentResult(
        experiment_id="e1", use_case="gone", environment="dev", status="completed", standard_runs=[],
        started_at=ports.clock.now(), finished_at=ports.clock.now()))
    verdict = GatePassed.create({"use_case": "gone", "experiment_id": "e1", "primary_metric": "accuracy",
                                 "best_variant": {}, "best_value": 1.0, "checks": [],
                                 "report_uri": "reports/gone/e1/summary.html"}, correlation_id="run-1")
    [failed] = handled(ports, verdict)
    assert (failed.type, failed.payload.experiment_id) == ("experiment.failed", "e1")


def registered(correlation_id: str = "run-1") -> FlowRegistered:
    return FlowRegistered.create({"use_case": "math_coding", "experiment_id": "e1", "name": "math-coding",
                                  "version": "3", "content_hash": "sha256:" + "a" * 64, "variant": {},
                                  "metrics": {"accuracy": 0.9}, "created": True}, correlation_id=correlation_id)


@drives("on_flow_registered")
def test_flow_registered_asks_the_approvers(ports: Ports) -> None:
    [asked] = handled(ports, registered())
    assert (asked.type, asked.payload.approvers) == ("approval.requested", APPROVERS)


@drives("on_approval_granted")
def test_approval_granted_requests_the_deployment(ports: Ports) -> None:
    granted = ApprovalGranted.create({"approval_id": "a1", "use_case": "math_coding", "flow_name": "math-coding",
                                      "flow_version": "3", "decided_by": "alice@contoso.com",
                                      "decided_at": ports.clock.now()}, correlation_id="run-1")
    [deploy] = handled(ports, granted)
    assert (deploy.type, deploy.payload.flow_version, deploy.payload.approval_id) == ("deployment.requested", "3", "a1")


@drives("on_deployment_requested")
def test_deployment_requested_of_an_unregistered_version_rolls_back(ports: Ports) -> None:
    request = DeploymentRequested.create({"use_case": "math_coding", "flow_name": "math-coding", "flow_version": "9",
                                          "environment": "local"}, correlation_id="run-1")
    [rolled_back] = handled(ports, request)
    assert rolled_back.type == "deployment.rolled_back"
    assert "version 9 is not registered" in rolled_back.payload.reason


@drives("on_deployment_check_requested")
def test_a_deployment_check_without_its_record_has_nothing_to_do(ports: Ports) -> None:
    check = DeploymentCheckRequested.create({"use_case": "math_coding", "endpoint": "math-coding-local",
                                             "deployment": "v-3", "request_id": "never-requested", "attempt": 1,
                                             "not_before": ports.clock.now()}, correlation_id="run-1")
    assert handled(ports, check) == []


@drives("on_traffic_requested")
def test_traffic_requested_for_a_missing_use_case_fails_with_its_reason(ports: Ports) -> None:
    request = DeploymentTrafficRequested.create({"use_case": "gone", "endpoint": "gone-local", "deployment": "v1",
                                                 "action": "retire"}, correlation_id="run-1")
    [failed] = handled(ports, request)
    assert (failed.type, failed.payload.action) == ("deployment.traffic_failed", "retire")


@drives("on_production_evaluation_requested")
def test_a_production_evaluation_with_no_traffic_judges_nothing(ports: Ports) -> None:
    requested = ProductionEvaluationRequested.create(
        {"use_case": "math_coding", "environment": "local", "window_end": ports.clock.now()},
        correlation_id="monitor-1")
    published = handled(ports, requested)
    assert all(event.type == "production.evaluated" for event in published)
    assert not [judged for event in published for judged in event.payload.deployments if judged.lines]


@drives("on_deployment_degraded", "on_production_degraded")
def test_degradations_notify_once_and_publish_nothing(ports: Ports) -> None:
    notifier = RecordingNotifier()
    ports = replace(ports, notifier=notifier)
    for event in (alerts.degraded(), alerts.judged()):
        assert handled(ports, event) == []
        assert ports.handle(event).replayed
    assert [note.kind for note in notifier.sent] == ["deployment.degraded", "production.degraded"]


# --- commands ---------------------------------------------------------------------------------------------------

def command(ports: Ports, message: DecideApproval | ExpireApprovals | SubmitFeedback) -> bool:
    """Handle a command; True when it was answered from its record (a replay)."""
    result = ports.bus().handle(message)
    assert result.handler in DRIVES
    return result.replayed


def ask(ports: Ports) -> str:
    [asked] = handled(ports, registered())
    return str(asked.payload.approval_id)


@drives("on_decide_approval")
def test_a_decision_is_recorded_once_and_the_same_form_again_acts_no_more(ports: Ports) -> None:
    approval_id = ask(ports)
    decision = DecideApproval(approval_id=approval_id, decision="granted", approver="alice@contoso.com",
                              comment="looks good")
    assert command(ports, decision) is False
    assert command(ports, decision) is True  # the resubmitted form: answered from its record
    assert types(ports.publisher.events) == ["approval.requested", "approval.granted"]
    assert get_approval(approval_id, ports.blobs).decided_by == "alice@contoso.com"
    with pytest.raises(NotAnApprover):  # a command's error reaches its caller as raised
        command(ports, decision.model_copy(update={"approver": "mallory@contoso.com"}))


@drives("on_expire_approvals")
def test_the_expiry_tick_sweeps_once_per_firing(ports: Ports) -> None:
    approval_id = ask(ports)
    ports.clock.advance(hours=2)
    assert command(ports, ExpireApprovals(tick=ports.clock.now())) is False
    retried = ports.clock.now() + timedelta(milliseconds=400)  # the same firing, invoked again
    assert command(ports, ExpireApprovals(tick=retried)) is True
    # The next firing sweeps again, even a second later (a schedule of */1 seconds, as the e2e tests use).
    assert command(ports, ExpireApprovals(tick=ports.clock.now() + timedelta(seconds=1))) is False
    assert types(ports.publisher.events)[-1] == "approval.expired"
    assert get_approval(approval_id, ports.blobs).status == "expired"


@drives("on_submit_feedback")
def test_feedback_is_stored_once_per_idempotency_key(ports: Ports) -> None:
    endpoints = Directory.of("math_coding", "math-dev", {"blue": 100}, live=False)
    ports = replace(ports, endpoints=endpoints)
    rating = Feedback(request_id="r-1", deployment="blue", rating=5)
    submitted = SubmitFeedback(use_case="math_coding", endpoint="math-dev", caller="c0ffee", submission_id="k-1",
                               feedback=rating)
    assert command(ports, submitted) is False
    assert command(ports, submitted) is True  # the retried request
    [stored] = ports.blobs.names(FEEDBACK)
    assert stored.endswith(f"/{submitted.record_id()}.json")
    assert json.loads(ports.blobs.read(FEEDBACK, stored)[0])["rating"] == 5
    with pytest.raises(PayloadMismatch):  # the same key for another submission is refused, not stored
        command(ports, submitted.model_copy(update={"feedback": Feedback(request_id="r-1", deployment="blue",
                                                                         thumbs="down")}))
    assert len(ports.blobs.names(FEEDBACK)) == 1


def test_the_feedback_route_answers_a_retry_with_the_same_id(monkeypatch: pytest.MonkeyPatch,
                                                             clock: ManualClock) -> None:
    """Application.submit_feedback, what POST /api/feedback calls: the Idempotency-Key decides what a retry is."""
    directory = Directory.of("math_coding", "math-dev", {"blue": 100}, live=False)
    monkeypatch.setattr("shared.services.ab_testing.DeployedEndpoints", lambda *_: directory)
    blobs = MemoryBlobStore()
    settings = Settings()
    app = Application(settings, blobs, RecordingPublisher(), clock, UnreachableModel(), BlobRegistry(blobs, clock),
                      build_deployments(settings, blobs, clock))
    body = json.dumps({"request_id": "r-1", "deployment": "blue", "thumbs": "up"}).encode()

    first = app.submit_feedback("math_coding", "math-dev", body, "ip:203.0.113.7", "retry-1")
    assert app.submit_feedback("math_coding", "math-dev", body, "ip:203.0.113.7", "retry-1") == first
    assert app.submit_feedback("math_coding", "math-dev", body, "ip:203.0.113.7") != first  # no key: a new opinion
    assert len(blobs.names(FEEDBACK)) == 2
    for key, status in (("retry-1", 422), ("not a key!", 400)):
        with pytest.raises(FeedbackRejected) as refused:
            app.submit_feedback("math_coding", "math-dev", body.replace(b"up", b"down"), "ip:203.0.113.7", key)
        assert refused.value.status == status


def test_every_handler_has_a_test_through_the_bus() -> None:
    assert set(DRIVES) == {handler.__name__ for handler in HANDLERS.values()}
