"""A handler failure a retry cannot fix ends the run on the first delivery with the stage's failure event (or a
dead letter where the stage has none); anything else still propagates so the broker retries. Real handlers and
services over an in-memory BlobStore (the storage suite runs the same paths on Azurite)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from azure.ai.ml.entities import KubernetesOnlineEndpoint

from shared import messagebus
from shared.deployment.azureml_deployer import ManagedOnlineDeployer
from shared.deployment.port import DeploymentError
from shared.events import (
    DeploymentRequested,
    DeploymentRolledBack,
    DeploymentTrafficRequested,
    Event,
    ExperimentFailed,
    GatePassed,
)
from shared.events.catalogue import DeploymentCheckRequested, DeploymentTrafficFailed
from shared.experiments.config import ExperimentConfigError, load_experiment
from shared.experiments.results import ExperimentResult
from shared.experiments.variants import Combination, materialize
from shared.failures import PermanentFailure, permanent_reason
from shared.handlers import FAILURE_EVENTS, HANDLERS
from shared.ports import PreconditionFailed
from shared.registry.port import InvalidName
from shared.services.deployment_settings import endpoint_for
from shared.services.deployments import DeploymentRefused, DeploymentWorkspace
from shared.services.registration import register_flow_if_changed
from tests.fakes.bus import Ports, in_memory_ports
from tests.fakes.memory import ManualClock
from tests.unit.test_azureml_deployer import Azure, autospec_client

ROOT = Path(__file__).resolve().parents[2]


def test_bad_names_config_and_refusals_are_permanent_faults_of_infrastructure_are_not() -> None:
    assert permanent_reason(InvalidName("'_unassigned-toplevel' is not a valid name")) == \
        "InvalidName: '_unassigned-toplevel' is not a valid name"
    assert permanent_reason(ExperimentConfigError("flows/nope: no experiment.yaml")).startswith("ExperimentConfigError")
    assert permanent_reason(DeploymentRefused("flow f version 9 is not registered")) is not None
    assert permanent_reason(PermanentFailure("x")) == "PermanentFailure: x"
    for transient in (RuntimeError("socket closed"), PreconditionFailed("etag changed"), TimeoutError(),
                      DeploymentError("changed while deploying (another instance?); retry")):
        assert permanent_reason(transient) is None


def test_the_reason_is_redacted_and_bounded() -> None:
    reason = permanent_reason(ExperimentConfigError("bad source AccountKey=c2VjcmV0; " + "x" * 5000))
    assert reason is not None
    assert "c2VjcmV0" not in reason
    assert len(reason) == 2000


def test_every_failure_event_belongs_to_a_handled_stage() -> None:
    assert set(FAILURE_EVENTS) <= set(HANDLERS)


@pytest.fixture
def deps(tmp_path: Path, clock: ManualClock) -> Ports:
    return in_memory_ports(tmp_path, clock)


def handle(event: Event, deps: Ports, letters: list[tuple[str, str]]) -> messagebus.HandleResult:
    return deps.handle(event, letters)


def deployment_of(use_case: str, version: str = "7") -> DeploymentRequested:
    return DeploymentRequested.create({"use_case": use_case, "flow_name": "math-coding", "flow_version": version,
                                       "environment": "local"}, correlation_id="run-1")


def test_a_flow_version_that_was_never_registered_rolls_back_at_once(deps: Ports) -> None:
    letters: list[tuple[str, str]] = []
    request = deployment_of("math_coding")

    result = handle(request, deps, letters)

    assert [type(event) for event in result.published] == [DeploymentRolledBack]
    rolled_back = result.published[0]
    assert rolled_back.payload.reason == \
        "deployment failed: DeploymentRefused: flow math-coding version 7 is not registered"
    # Named after the use-case folder, as the deployment itself would have been.
    assert (rolled_back.payload.endpoint, rolled_back.payload.deployment) == ("math-coding-local", "v-7")
    assert (rolled_back.causation_id, result.failure) == (request.id, rolled_back.payload.reason.split(": ", 1)[1])
    assert letters == []
    assert deps.publisher.events == result.published
    # A redelivery replays the stored outcome: the same event, not a second attempt.
    again = handle(request, deps, letters)
    assert (again.replayed, again.published) == (True, result.published)


def test_a_use_case_without_a_folder_rolls_back_with_its_default_endpoint(deps: Ports) -> None:
    result = handle(deployment_of("no_such_use_case"), deps, [])
    payload = result.published[0].payload
    assert payload.endpoint == "no-such-use-case-local"
    assert payload.reason.startswith("deployment failed: ExperimentConfigError: ")
    assert payload.traffic == {}


@pytest.mark.parametrize(("block", "reason"), [
    ("{target: container, image_repository: myacr.azurecr.io/flows}",
     "ExperimentConfigError: math_coding: invalid deployment block: deployment.image_repository: Extra inputs"),
    ("{target: container}", "DeploymentRefused: Azure ML deployment needs the settings AZURE_SUBSCRIPTION_ID"),
])
def test_a_deployment_block_the_app_cannot_honour_rolls_back(deps: Ports, block: str, reason: str) -> None:
    (deps.settings.flows_dir / "math_coding" / "experiment.local.yaml").write_text(f"deployment: {block}\n")
    payload = handle(deployment_of("math_coding"), deps, []).published[0].payload
    assert payload.reason.startswith(f"deployment failed: {reason}")


def test_a_traffic_request_for_a_missing_use_case_fails_with_its_reason(deps: Ports) -> None:
    request = DeploymentTrafficRequested.create({"use_case": "gone", "endpoint": "gone-local", "deployment": "v1",
                                                 "action": "promote"}, correlation_id="run-2")
    [failed] = handle(request, deps, []).published
    assert isinstance(failed, DeploymentTrafficFailed)
    assert (failed.payload.action, failed.payload.traffic) == ("promote", {})
    assert failed.payload.reason.startswith("ExperimentConfigError: ")


def test_registering_the_chosen_flow_of_a_missing_use_case_fails_the_experiment(deps: Ports) -> None:
    verdict = GatePassed.create({
        "use_case": "gone", "experiment_id": "e1", "environment": "dev", "primary_metric": "accuracy",
        "best_variant": {}, "best_value": 1.0, "checks": [], "report_uri": "reports/gone/e1/summary.html"},
        correlation_id="run-3")
    deps.experiments.store.save_result(ExperimentResult(
        experiment_id="e1", use_case="gone", environment="dev", status="completed", standard_runs=[],
        started_at=deps.clock.now(), finished_at=deps.clock.now()))

    [failed] = handle(verdict, deps, []).published

    assert isinstance(failed, ExperimentFailed)
    assert (failed.payload.use_case, failed.payload.experiment_id) == ("gone", "e1")
    assert failed.payload.reasons[0].startswith("ExperimentConfigError: ")


def test_a_transient_fault_still_propagates_and_releases_the_claim(deps: Ports,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def flaky(*args: object) -> list[Event]:
        calls.append(1)
        if len(calls) == 1:
            raise PreconditionFailed("lost a race")
        return []

    monkeypatch.setattr("shared.handlers.deploy_approved_flow", flaky)
    request = deployment_of("math_coding")
    with pytest.raises(PreconditionFailed):
        handle(request, deps, [])
    assert handle(request, deps, []).published == []  # retried: the handler ran again
    assert calls == [1, 1]


def test_an_endpoint_azure_ml_refuses_to_reuse_rolls_back_without_a_retry(deps: Ports, tmp_path: Path) -> None:
    """The endpoint exists as a Kubernetes one and the target is managed: begin_endpoint refuses, which no retry
    changes. The SDK boundary is autospecced (tests/unit/test_azureml_deployer.py)."""
    use_case_dir = deps.settings.flows_dir / "math_coding"
    config = load_experiment(use_case_dir, "dev")
    version, _ = register_flow_if_changed(
        deps.registry, name="math-coding", flow_dir=materialize(config.flow_dir, Combination(), tmp_path / "flow"),
        properties={"variant": "{}", "hyperparameters": "{}"})
    endpoint = endpoint_for(deps.settings, "math_coding", "dev")
    client = autospec_client()
    Azure(client, endpoint=KubernetesOnlineEndpoint(name=endpoint, compute="k8s", provisioning_state="Succeeded"))
    workspace = DeploymentWorkspace(flows_root=deps.settings.flows_dir, work_root=deps.settings.work_dir,
                                    deployer_for=lambda _: ManagedOnlineDeployer(client, work_dir=tmp_path / "aml",
                                                                                 app_settings={}),
                                    tester=None,  # type: ignore[arg-type]
                                    app_settings=deps.settings.app_settings, local_stack=deps.settings.local_stack)
    request = DeploymentRequested.create({"use_case": "math_coding", "flow_name": "math-coding",
                                          "flow_version": version.version, "environment": "dev"},
                                         correlation_id="run-4")

    [rolled_back] = handle(request, replace(deps, deployments=workspace), []).published

    assert isinstance(rolled_back, DeploymentRolledBack)
    assert rolled_back.payload.endpoint == endpoint
    assert f"endpoint {endpoint} exists as a KubernetesOnlineEndpoint" in rolled_back.payload.reason
    client.online_endpoints.begin_create_or_update.assert_not_called()
    client.online_deployments.begin_create_or_update.assert_not_called()


def test_the_payload_hash_ignores_clock_readings_but_not_content() -> None:
    check = DeploymentCheckRequested.create({"use_case": "u", "endpoint": "e", "deployment": "d", "request_id": "r",
                                             "attempt": 2, "not_before": "2026-01-01T00:00:15Z"}, correlation_id="c")
    later = check.model_copy(update={"occurred_at": check.occurred_at + timedelta(seconds=3), "payload": (
        check.payload.model_copy(update={"not_before": check.payload.not_before + timedelta(seconds=3)}))})
    other = check.model_copy(update={"payload": check.payload.model_copy(update={"attempt": 3})})
    assert messagebus.payload_hash(later) == messagebus.payload_hash(check)
    assert messagebus.payload_hash(other) != messagebus.payload_hash(check)
