"""The deployment phase's monitoring loop: user feedback, the A/B report comparing an endpoint's deployments, and
promoting or retiring a deployment when the comparison says so.

A traffic update on Azure ML can take minutes, so a promote/retire never waits for it: the request starts it
(`begin_set_traffic`), keeps a TrafficRecord (deployment_record.py), and finishes through the same scheduled
`deployment.check_requested` events as a deployment (`kind` traffic) — deployment.traffic_changed once the endpoint
reports the new split, deployment.traffic_failed when it fails or is not done by `operation_timeout_seconds`.
"""

from __future__ import annotations

import re
from datetime import timedelta

from shared.deployment.port import (
    Deployer,
    DeploymentError,
    EndpointNotFound,
    InvalidTraffic,
    OperationStatus,
    rollback_traffic,
)
from shared.events import DeploymentTrafficChanged, DeploymentTrafficRequested, Event
from shared.events.catalogue import DeploymentCheckRequested, DeploymentTrafficFailed
from shared.experiments.catalog import find_use_cases
from shared.experiments.config import ExperimentConfigError
from shared.feedback.ab_report import ABReport, report_endpoint
from shared.feedback.endpoints import KnownEndpoint
from shared.feedback.telemetry import REPORT_WINDOW
from shared.ports import BlobStore, Clock
from shared.services.deployment_record import RecordStore, TrafficRecord
from shared.services.deployments import DeploymentWorkspace

# A use case's name is its folder's: checked before it is joined to a path (a URL segment can be anything).
_USE_CASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def deployer_of(workspace: DeploymentWorkspace, use_case: str, environment: str) -> Deployer:
    return workspace.deployer_for(workspace.deployment(workspace.experiment(use_case, environment), environment))


class DeployedEndpoints:
    """The EndpointDirectory over flows/: a use case is a folder find_use_cases lists, its endpoint the one its
    `deployment:` block (or the default name) gives in this environment — nothing else is known."""

    def __init__(self, workspace: DeploymentWorkspace, environment: str) -> None:
        self.workspace = workspace
        self.environment = environment

    def find(self, use_case: str, endpoint: str) -> KnownEndpoint:
        if not _USE_CASE.fullmatch(use_case) or use_case not in find_use_cases(self.workspace.flows_root):
            raise EndpointNotFound(f"no use case {use_case[:100]!r}")
        try:
            config = self.workspace.experiment(use_case, self.environment)
        except ExperimentConfigError as broken:  # the app's own files: not the caller's fault
            raise DeploymentError(f"use case {use_case}'s experiment.yaml does not load: {broken}") from None
        settings = self.workspace.deployment(config, self.environment)
        if endpoint != settings.endpoint_name:
            raise EndpointNotFound(f"use case {use_case} has no endpoint {endpoint[:100]!r} in environment "
                                   f"{self.environment} (its endpoint is {settings.endpoint_name})")
        telemetry = None if self.workspace.telemetry_for is None else self.workspace.telemetry_for(settings)
        return KnownEndpoint(use_case, endpoint, self.workspace.deployer_for(settings), telemetry)


def write_ab_report(known: KnownEndpoint, blobs: BlobStore, clock: Clock, *,
                    window: timedelta = REPORT_WINDOW) -> tuple[ABReport, dict[str, str]]:
    """The A/B report over the requests the endpoint served in the last `window`, with its current split.
    EndpointNotFound when the endpoint is not deployed, TelemetryError when its requests cannot be read."""
    if known.telemetry is None:
        raise DeploymentError("no request telemetry is configured for the A/B report")
    end = clock.now()
    served = known.telemetry.served_requests(known.endpoint, end - window, end)
    traffic = known.deployer.get_traffic(known.endpoint)
    if not traffic:
        raise EndpointNotFound(f"endpoint {known.endpoint} has no deployment yet")
    return report_endpoint(blobs, clock, known.use_case, known.endpoint, served.requests, traffic=traffic,
                           telemetry_warning=served.warning)


def change_traffic(event: DeploymentTrafficRequested, blobs: BlobStore, workspace: DeploymentWorkspace,
                   clock: Clock, environment: str) -> list[Event]:
    """Start the split asked for and return at once; scheduled checks wait for the endpoint to report it.

    Promote: the deployment takes 100 %. Retire: it goes to 0 % and its share back to the prior. A request that
    cannot be honoured (no such deployment, a split the platform refuses) ends at once in deployment.traffic_failed.
    """
    request, store = event.payload, RecordStore(blobs)
    found = store.load(request.use_case, event.id, TrafficRecord)
    if found is not None:  # a redelivery: the change is under way, or over
        return found[0].replay(event) or []
    now = clock.now()
    record = TrafficRecord(request_id=event.id, request=request, endpoint=request.endpoint,
                           deployment=request.deployment, step_started_at=now,
                           deadline=now + timedelta(seconds=workspace.operation_timeout_seconds))
    current: dict[str, int] = {}
    try:
        deployer = deployer_of(workspace, request.use_case, environment)
        current = deployer.get_traffic(request.endpoint)
        if request.deployment not in current:
            raise DeploymentError(f"{request.endpoint} has no deployment {request.deployment}")
        if request.action == "promote":
            wanted = {name: 100 if name == request.deployment else 0 for name in current}
        else:
            wanted = rollback_traffic(current, request.deployment)
        record.operation = deployer.begin_set_traffic(request.endpoint, wanted)
    except (DeploymentError, InvalidTraffic) as refused:  # nothing started; retrying would not help
        return _finish(record, event, store, None, str(refused), current)
    return _advance(record, event, deployer, store, None, workspace, clock)


def check_traffic_change(event: DeploymentCheckRequested, blobs: BlobStore, workspace: DeploymentWorkspace,
                         clock: Clock, environment: str) -> list[Event]:
    """A scheduled check of a traffic request: has the endpoint reported the new split yet?"""
    store = RecordStore(blobs)

    def advance(record: TrafficRecord, etag: str) -> list[Event]:
        deployer = deployer_of(workspace, record.use_case, environment)
        return _advance(record, event, deployer, store, etag, workspace, clock)

    return store.resume(event, TrafficRecord, advance)


def _advance(record: TrafficRecord, cause: Event, deployer: Deployer, store: RecordStore, etag: str | None,
             workspace: DeploymentWorkspace, clock: Clock) -> list[Event]:
    """Poll once: done, failed, past the deadline — or schedule the next check (15 s, 30 s, then every 60 s)."""
    assert record.operation is not None
    now = clock.now()
    record.operation = operation = deployer.poll(record.operation)
    if operation.pending and now < record.deadline:
        check = record.next_check(cause, now, workspace.check_interval_seconds, workspace.max_check_interval_seconds)
        record.remember(cause, [check])
        store.save(record, etag)
        return [check]
    failure = "" if operation.status is OperationStatus.SUCCEEDED else operation.message or (
        f"traffic update of endpoint {record.endpoint}: not finished after "
        f"{(record.deadline - record.step_started_at).total_seconds():.0f} s; it goes on in Azure ML — check it "
        "there before asking again")
    return _finish(record, cause, store, etag, failure, deployer.get_traffic(record.endpoint))


def _finish(record: TrafficRecord, cause: Event, store: RecordStore, etag: str | None, failure: str,
            traffic: dict[str, int]) -> list[Event]:
    """The terminal event, with the split the endpoint reports now; the record keeps it for redeliveries."""
    payload = {**record.request.model_dump(), "traffic": traffic}
    if failure:
        record.outcome, event = "failed", cause.follow_up(DeploymentTrafficFailed, {**payload,
                                                                                    "reason": failure[:2000]})
    else:
        record.outcome, event = "changed", cause.follow_up(DeploymentTrafficChanged, payload)
    record.remember(cause, [event])
    store.save(record, etag)
    return [event]
