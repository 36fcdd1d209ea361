"""Ship an approved flow version: rebuild it from source and check it is byte-for-byte what was registered, deploy
it beside the version serving now (at 0 % traffic), smoke-test it pinned, then give it its configured share while
the prior keeps its own — or, when anything fails or times out, roll back: the new deployment stays at 0 % and the
prior keeps serving.

No invocation waits for Azure. A deployment is a state machine persisted in its record (deployment_record.py):

    endpoint -> deployment -> ready -> smoke -> traffic -> verified
        \\______________\\_________\\________\\________\\-> (rollback ->) rolled_back

Each step starts its long operation (`Deployer.begin_*`) and, while it is pending, the handler saves the record and
returns a `deployment.check_requested` scheduled 15 s, 30 s, then every 60 s later; that check polls and moves on.
A step past its deadline (the operation timeout; readiness_timeout_seconds for `ready`) rolls back. Steps that
complete at once (the local target, an endpoint that exists) run on in the same invocation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shared.blob_layout import DEPLOYMENTS, REPORTS, deployed_state_name, safe_segment, smoke_report_name
from shared.deployment.port import (
    Deployer,
    DeploymentConfig,
    DeploymentError,
    DeploymentRequest,
    EndpointNotFound,
    OperationKind,
    OperationState,
    OperationStatus,
    deployment_name_for,
    plan_traffic,
    prior_deployment,
    rollback_traffic,
)
from shared.events import (
    DeploymentCompleted,
    DeploymentRequested,
    DeploymentRolledBack,
    DeploymentVerified,
    Event,
    SmokeFailed,
    SmokePassed,
)
from shared.events.catalogue import DeploymentCheckRequested
from shared.experiments.config import ExperimentConfig, load_experiment
from shared.experiments.gate import Baseline
from shared.experiments.variants import Combination, materialize
from shared.failures import PermanentFailure
from shared.feedback.telemetry import RequestTelemetry
from shared.ports import BlobStore, Clock
from shared.registry.hashing import directory_hash
from shared.registry.port import Registry
from shared.services.deployment_record import DeploymentRecord, RecordStore, Step
from shared.services.deployment_settings import deployment_config
from shared.smoke.tester import (
    NOT_READY_STATUSES,
    SmokeReport,
    SmokeTester,
    expected_outputs,
    smoke_requests,
    smoke_test_deployment,
)


class DeploymentRefused(PermanentFailure, ValueError):
    """The request cannot be honoured as asked (unknown version, source drifted since registration): the bus ends the
    deployment with deployment.rolled_back on its first delivery."""


@dataclass(frozen=True)
class DeploymentWorkspace:
    flows_root: Path
    work_root: Path
    deployer_for: Callable[[DeploymentConfig], Deployer]
    tester: SmokeTester
    # The app's settings (Settings.app_settings: workspace, connection settings) and whether it runs on the local
    # stack (Settings.local_stack): what a use case's deployment block resolves against.
    app_settings: Mapping[str, str]
    local_stack: bool
    # The requests a target's endpoints served (the A/B report); None: no report.
    telemetry_for: Callable[[DeploymentConfig], RequestTelemetry] | None = None
    # Azure ML documents 10-15 minutes for a deployment; past this, a pending operation rolls back.
    operation_timeout_seconds: float = 1800
    # The first re-check after 15 s, doubling up to one a minute.
    check_interval_seconds: float = 15
    max_check_interval_seconds: float = 60

    def experiment(self, use_case: str, environment: str) -> ExperimentConfig:
        return load_experiment(self.flows_root / use_case, environment, local=self.local_stack)

    def deployment(self, config: ExperimentConfig, environment: str) -> DeploymentConfig:
        return deployment_config(config, environment, self.app_settings)


def _rebuild(config: ExperimentConfig, registry: Registry, name: str, version: str, target: Path) -> tuple[Path, dict]:
    """The registered flow, rebuilt from source (materialize is deterministic) and verified by its content hash."""
    registered = registry.flow(name, version)
    if registered is None:
        raise DeploymentRefused(f"flow {name} version {version} is not registered")
    combination = Combination(variant=json.loads(registered.properties.get("variant", "{}")),
                              hyperparameters=json.loads(registered.properties.get("hyperparameters", "{}")))
    flow_dir = materialize(config.flow_dir, combination, target)
    if directory_hash(flow_dir) != registered.content_hash:
        raise DeploymentRefused(f"the flow's source changed since {name} version {version} was registered "
                                f"({registered.content_hash}); register and approve the current source instead")
    metrics = {key.removeprefix("metric."): float(value) for key, value in registered.properties.items()
               if key.startswith("metric.")}
    return flow_dir, metrics


@dataclass
class _Run:
    """One invocation's view of a deployment: the record, what it needs to act, and the events it emits."""

    record: DeploymentRecord
    cause: Event
    blobs: BlobStore
    registry: Registry
    workspace: DeploymentWorkspace
    clock: Clock
    config: ExperimentConfig
    settings: DeploymentConfig
    deployer: Deployer
    events: list[Event]

    @property
    def scratch(self) -> Path:
        return self.workspace.work_root / "deploy" / safe_segment(self.record.request_id)

    def flow_dir(self) -> Path:
        """The rebuilt flow; rebuilt again when this instance has not got it (another instance began)."""
        target = self.scratch / "flow"
        if not target.is_dir():
            request = self.record.request
            return _rebuild(self.config, self.registry, request.flow_name, request.flow_version, target)[0]
        return target

    def ref(self, **extra: object) -> dict[str, object]:
        return {"use_case": self.record.request.use_case, "endpoint": self.record.endpoint,
                "deployment": self.record.deployment, **extra}

    def emit(self, event_cls: type[Event], payload: dict[str, object]) -> None:
        self.events.append(self.cause.follow_up(event_cls, payload))


def _open(record: DeploymentRecord, cause: Event, blobs: BlobStore, registry: Registry,
          workspace: DeploymentWorkspace, clock: Clock) -> _Run:
    request = record.request
    config = workspace.experiment(request.use_case, request.environment)
    settings = workspace.deployment(config, request.environment)
    return _Run(record, cause, blobs, registry, workspace, clock, config, settings, workspace.deployer_for(settings),
                [])


def deploy_approved_flow(event: DeploymentRequested, blobs: BlobStore, registry: Registry,
                         workspace: DeploymentWorkspace, clock: Clock) -> list[Event]:
    """Start a deployment: rebuild and verify the flow, note what serves now, start the endpoint step."""
    request, store = event.payload, RecordStore(blobs)
    existing = store.load(request.use_case, event.id, DeploymentRecord)
    if existing is not None:  # a redelivery: the deployment is under way
        return existing[0].replay(event) or []
    config = workspace.experiment(request.use_case, request.environment)
    settings = workspace.deployment(config, request.environment)
    try:
        deployer = workspace.deployer_for(settings)
    except DeploymentError as unavailable:  # a target the app does not deploy to, settings it lacks: not transient
        raise DeploymentRefused(str(unavailable)) from None
    target = workspace.work_root / "deploy" / safe_segment(event.id) / "flow"
    shutil.rmtree(target, ignore_errors=True)
    _, metrics = _rebuild(config, registry, request.flow_name, request.flow_version, target)
    try:
        before = deployer.get_traffic(settings.endpoint_name)
    except EndpointNotFound:
        before = {}
    now = clock.now()
    record = DeploymentRecord(request_id=event.id, request=request, endpoint=settings.endpoint_name,
                              deployment=deployment_name_for(request.flow_version), prior_traffic=before,
                              metrics=metrics, step=Step.ENDPOINT, step_started_at=now, deadline=now)
    try:
        endpoint = deployer.begin_endpoint(settings)
    except DeploymentError as refused:  # e.g. the endpoint exists as another kind: it would fail the same way again
        endpoint = OperationState(kind=OperationKind.ENDPOINT, endpoint=settings.endpoint_name,
                                  status=OperationStatus.FAILED, message=str(refused))
    record.enter(Step.ENDPOINT, now, workspace.operation_timeout_seconds, endpoint)
    run = _Run(record, event, blobs, registry, workspace, clock, config, settings, deployer, [])
    return _advance(run, store, None)


def check_deployment(event: DeploymentCheckRequested, blobs: BlobStore, registry: Registry,
                     workspace: DeploymentWorkspace, clock: Clock) -> list[Event]:
    """A scheduled check: poll the step's operation and move on as far as it can go now."""
    store = RecordStore(blobs)
    return store.resume(event, DeploymentRecord, lambda record, etag: _advance(
        _open(record, event, blobs, registry, workspace, clock), store, etag))


def _advance(run: _Run, store: RecordStore, etag: str | None) -> list[Event]:
    while _step(run):
        pass
    record = run.record
    if record.final:
        shutil.rmtree(run.scratch, ignore_errors=True)
    else:
        run.events.append(record.next_check(run.cause, run.clock.now(), run.workspace.check_interval_seconds,
                                            run.workspace.max_check_interval_seconds))
    record.remember(run.cause, run.events)
    store.save(record, etag)
    return run.events


def _step(run: _Run) -> bool:
    """Act on the record's step once; True when it moved on and the next step can be looked at at once."""
    record, deployer, now = run.record, run.deployer, run.clock.now()
    if record.step in (Step.ENDPOINT, Step.DEPLOYMENT, Step.TRAFFIC, Step.ROLLBACK):
        assert record.operation is not None
        record.operation = operation = deployer.poll(record.operation)
        if operation.pending and now < record.deadline:
            return False
        failure = "" if operation.status is OperationStatus.SUCCEEDED else operation.message or (
            f"{operation.kind.value} {record.endpoint}/{record.deployment}: not finished after "
            f"{(record.deadline - record.step_started_at).total_seconds():.0f} s; it goes on in Azure ML — check "
            "it there before retrying")
        return _after_operation(run, operation, failure, now)
    if record.step is Step.READY:
        return _ready_step(run, now)
    if record.step is Step.SMOKE:
        return _smoke_step(run, now)
    return False  # final


def _ready_step(run: _Run, now: datetime) -> bool:
    record = run.record
    if _ready(run):
        record.enter(Step.SMOKE, now, run.workspace.operation_timeout_seconds)
        return True
    if now < record.deadline:
        return False
    report = _not_ready_report(run, now)
    run.emit(SmokeFailed, _smoke_payload(run, report))
    return _begin_rollback(run, report.failures[0], now)


def _smoke_step(run: _Run, now: datetime) -> bool:
    """The smoke test proper: the deployment answered a probe, so the tester's own readiness wait ends at once."""
    record = run.record
    report = smoke_test_deployment(run.deployer, run.workspace.tester, use_case=record.request.use_case,
                                   use_case_dir=run.workspace.flows_root / record.request.use_case,
                                   config=run.config, flow_dir=run.flow_dir(), endpoint=record.endpoint,
                                   deployment=record.deployment, smoke=run.settings.smoke)
    if not report.passed:
        run.emit(SmokeFailed, _smoke_payload(run, report))
        return _begin_rollback(run, "; ".join(report.failures[:5]) or "smoke test failed", now)
    run.emit(SmokePassed, _smoke_payload(run, report))
    wanted = plan_traffic(record.prior_traffic, record.deployment, run.settings.traffic)
    record.enter(Step.TRAFFIC, now, run.workspace.operation_timeout_seconds,
                 run.deployer.begin_set_traffic(record.endpoint, wanted))
    return True


def _after_operation(run: _Run, finished: OperationState, failure: str, now: datetime) -> bool:
    record, deployer = run.record, run.deployer
    if record.step in (Step.ENDPOINT, Step.DEPLOYMENT) and failure:
        # It never served: nothing to smoke-test, the prior keeps its traffic. Not retried — it would fail again.
        run.emit(DeploymentRolledBack, run.ref(reason=f"deployment failed: {failure}"[:2000],
                                               traffic=record.prior_traffic))
        record.enter(Step.ROLLED_BACK, now, 0)
        return False
    if record.step is Step.ENDPOINT:
        request = DeploymentRequest(use_case=record.request.use_case, flow_name=record.request.flow_name,
                                    flow_version=record.request.flow_version, flow_dir=run.flow_dir(),
                                    deployment_name=record.deployment, config=run.settings)
        try:
            operation = deployer.begin_deploy(request)
        except DeploymentError as refused:  # settings the platform cannot honour: it never starts
            operation = finished.finished(OperationStatus.FAILED, str(refused))
        record.enter(Step.DEPLOYMENT, now, run.workspace.operation_timeout_seconds, operation)
        return True
    if record.step is Step.DEPLOYMENT:
        run.emit(DeploymentCompleted, run.ref(flow_version=record.request.flow_version,
                                              traffic=deployer.get_traffic(record.endpoint)))
        record.enter(Step.READY, now, run.settings.smoke.readiness_timeout_seconds)
        return True
    if record.step is Step.TRAFFIC:
        if failure:
            return _begin_rollback(run, f"traffic update failed: {failure}", now)
        baseline = Baseline(flow_version=record.request.flow_version, metrics=record.metrics)
        run.blobs.write(DEPLOYMENTS, deployed_state_name(record.request.use_case),
                        baseline.model_dump_json(indent=2).encode())
        run.emit(DeploymentVerified, run.ref(flow_version=record.request.flow_version,
                                             traffic=deployer.get_traffic(record.endpoint)))
        record.enter(Step.VERIFIED, now, 0)
        return False
    # ROLLBACK: the prior's share is back (or could not be given back: the reason says so).
    reason = record.reason + (f"; giving the traffic back failed: {failure}" if failure else "")
    run.emit(DeploymentRolledBack, run.ref(reason=reason[:2000], traffic=deployer.get_traffic(record.endpoint)))
    record.enter(Step.ROLLED_BACK, now, 0)
    return False


def _begin_rollback(run: _Run, reason: str, now: datetime) -> bool:
    """The new deployment to 0 %, its share back to the prior; at once when nothing has to change."""
    record, deployer = run.record, run.deployer
    record.reason = reason
    current = deployer.get_traffic(record.endpoint)
    wanted = rollback_traffic(current, record.deployment, prior=prior_deployment(record.prior_traffic,
                                                                                 record.deployment))
    if {k: v for k, v in wanted.items() if v} == {k: v for k, v in current.items() if v}:
        run.emit(DeploymentRolledBack, run.ref(reason=reason[:2000], traffic=current))
        record.enter(Step.ROLLED_BACK, now, 0)
        return False
    record.enter(Step.ROLLBACK, now, run.workspace.operation_timeout_seconds,
                 deployer.begin_set_traffic(record.endpoint, wanted))
    return True


def _ready(run: _Run) -> bool:
    """One readiness probe: the use case's first smoke request, pinned to the new deployment. No answer or a
    'not up yet' status (404/408/429/502/503/504) means not ready."""
    record, tester = run.record, run.workspace.tester
    try:
        target = run.deployer.scoring_request(record.endpoint, record.deployment)
    except DeploymentError:  # e.g. no scoring URI yet
        return False
    # The first request is the use case's sample-request.json when it has one, as in the smoke test.
    probe = smoke_requests(run.workspace.flows_root / record.request.use_case, run.config, run.flow_dir(),
                           tester.blobs, 1)[0]
    timeout = max(5.0, 2 * run.settings.smoke.latency_budget_ms / 1000)
    answer = tester.transport(target.url, json.dumps(probe.inputs).encode(), target.http_headers(), timeout)
    return answer.status is not None and answer.status not in NOT_READY_STATUSES


def _not_ready_report(run: _Run, now: datetime) -> SmokeReport:
    record, smoke = run.record, run.settings.smoke
    waited = (now - record.step_started_at).total_seconds()
    report = SmokeReport(
        use_case=record.request.use_case, endpoint=record.endpoint, deployment=record.deployment, passed=False,
        started_at=record.step_started_at, finished_at=now, ready=False, readiness_attempts=record.step_checks + 1,
        readiness_seconds=round(waited, 3), latency_budget_ms=smoke.latency_budget_ms,
        expected_outputs=expected_outputs(run.flow_dir()), checks=[],
        failures=[f"not ready after {record.step_checks + 1} attempt(s) in {waited:.0f} s "
                  f"(readiness_timeout_seconds = {smoke.readiness_timeout_seconds})"], latencies_ms=[])
    run.blobs.write(REPORTS, smoke_report_name(record.request.use_case, record.endpoint, record.deployment),
                    report.model_dump_json(indent=2).encode())
    return report


def _smoke_payload(run: _Run, report: SmokeReport) -> dict[str, object]:
    record = run.record
    report_name = smoke_report_name(record.request.use_case, record.endpoint, record.deployment)
    return run.ref(checks_passed=sum(check.passed for check in report.checks),
                   checks_failed=sum(not check.passed for check in report.checks), failures=report.failures[:50],
                   report_uri=f"{REPORTS}/{report_name}")
