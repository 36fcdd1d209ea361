"""The production monitor: on each timer tick, every use case with a `monitoring:` block whose schedule fired is
looked at — error rate and latency percentiles per deployment over the sliding window, from the production logs.
A deployment with traffic that breaks a threshold gets deployment.degraded (the evidence in its payload, so the
journal says why) and, with `auto_rollback`, a deployment.traffic_requested that retires it: its share goes back to
the prior deployment through the same path as a person's request.

Idempotent: the window ends at the schedule's firing time, so evaluating the same firing again finds it done
(`last_run`), and the events' ids derive from (use case, endpoint, deployment, window end): a re-run after a crash
before the state was saved publishes the same ids, which the handlers drop as duplicates. A deployment already
reported is not reported again until a whole new window has passed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from croniter import croniter
from pydantic import BaseModel, Field

from shared.blob_layout import SYSTEM, monitoring_state_name
from shared.deployment.port import DeploymentConfig, DeploymentError, DeploymentTarget, EndpointNotFound
from shared.events import DeploymentTrafficRequested, Event
from shared.events.envelope import derived_event_id
from shared.events.monitoring import DeploymentDegraded
from shared.experiments.catalog import find_use_cases
from shared.experiments.config import ExperimentConfigError, load_experiment
from shared.experiments.experiment_model import ExperimentConfig
from shared.experiments.monitoring_config import MonitoringConfig
from shared.monitoring.production_log import BlobProductionLog, ProductionLog
from shared.monitoring.window import DeploymentWindow, breaches, window_statistics
from shared.ports import BlobNotFound, BlobStore, Clock, EventPublisher, PreconditionFailed
from shared.services.deployment_settings import deployment_config
from shared.services.deployments import DeploymentWorkspace

log = logging.getLogger("genaiops.monitoring")

LogFor = Callable[[DeploymentConfig], ProductionLog | None]


class MonitorState(BaseModel):
    last_run: datetime | None = Field(default=None, description="The last schedule firing evaluated")
    reported: dict[str, datetime] = Field(default_factory=dict, description="endpoint/deployment -> window end")


def production_log_for(blobs: BlobStore) -> LogFor:
    """The production log of a target: the routers' blobs locally, the data collector's output on Azure ML (when
    its container is configured), none for a container target."""
    def log_for(settings: DeploymentConfig) -> ProductionLog | None:
        if settings.target is DeploymentTarget.LOCAL:
            return BlobProductionLog(blobs)
        if settings.target in (DeploymentTarget.AML_MANAGED, DeploymentTarget.AML_KUBERNETES):
            from shared.monitoring.azureml_production_log import AzureMLProductionLog

            return AzureMLProductionLog.from_settings()
        return None

    return log_for


def monitor_production(blobs: BlobStore, publisher: EventPublisher, clock: Clock, workspace: DeploymentWorkspace,
                       environment: str, log_for: LogFor) -> list[Event]:
    """One tick over every use case; returns what was published. A use case that fails is logged and skipped: the
    next firing tries again."""
    published: list[Event] = []
    for use_case in find_use_cases(workspace.flows_root):
        try:
            config = load_experiment(workspace.flows_root / use_case, environment)
        except ExperimentConfigError as broken:
            log.warning("monitoring skips %s: its experiment.yaml does not load: %s", use_case, broken)
            continue
        if config.monitoring is None:
            continue
        try:
            published += monitor_use_case(use_case, config, config.monitoring, blobs, publisher, clock, workspace,
                                          environment, log_for)
        except (DeploymentError, ExperimentConfigError) as failure:  # the log unreadable, a broken deployment block
            log.warning("monitoring of %s failed this time: %s", use_case, failure)
    return published


def monitor_use_case(use_case: str, config: ExperimentConfig, monitoring: MonitoringConfig, blobs: BlobStore,
                     publisher: EventPublisher, clock: Clock, workspace: DeploymentWorkspace, environment: str,
                     log_for: LogFor) -> list[Event]:
    state, etag = _load(blobs, use_case)
    fired = croniter(monitoring.schedule, clock.now(), second_at_beginning=True).get_prev(datetime)
    if state.last_run is not None and fired <= state.last_run:
        return []  # this firing was evaluated already
    settings = deployment_config(config, environment, workspace.app_settings)
    production_log = log_for(settings)
    events: list[Event] = []
    if production_log is not None:
        try:
            traffic = workspace.deployer_for(settings).get_traffic(settings.endpoint_name)
        except EndpointNotFound:
            traffic = {}  # nothing deployed yet
        start = fired - monitoring.window
        lines = production_log.lines(use_case, settings.endpoint_name, start, fired)
        for name, window in window_statistics(lines).items():
            key = f"{settings.endpoint_name}/{name}"
            reported = state.reported.get(key)
            if traffic.get(name, 0) <= 0 or (reported is not None and fired - reported < monitoring.window):
                continue
            found = breaches(window, monitoring)
            if found:
                events += _degraded(use_case, settings.endpoint_name, environment, window, found, start, fired,
                                    traffic, monitoring)
                state.reported[key] = fired
    if events:
        publisher.publish(events)
        log.warning("%s: %s", use_case, "; ".join(f"{e.type} {getattr(e.payload, 'deployment', '')}" for e in events))
    state.last_run = fired
    state.reported = {key: end for key, end in state.reported.items() if fired - end < monitoring.window}
    # Lost to another instance evaluating the same firing: its events carry the same ids.
    with contextlib.suppress(PreconditionFailed):
        blobs.write(SYSTEM, monitoring_state_name(use_case), state.model_dump_json().encode(),
                    if_match=etag, if_absent=etag is None)
    return events


def _degraded(use_case: str, endpoint: str, environment: str, window: DeploymentWindow, found: list[str],
              start: datetime, end: datetime, traffic: dict[str, int], monitoring: MonitoringConfig) -> list[Event]:
    others = [name for name in traffic if name != window.deployment]
    rollback = "disabled" if not monitoring.auto_rollback else "requested" if others else "impossible"
    evidence = window.model_dump(exclude={"deployment"})
    degraded = DeploymentDegraded.create({
        "use_case": use_case, "endpoint": endpoint, "deployment": window.deployment, "environment": environment,
        "breaches": found, "window": {"start": start, "end": end, **evidence},
        "thresholds": monitoring.model_dump(include={"min_requests", "max_error_rate", "latency_p95_ms"}),
        "traffic": traffic, "rollback": rollback,
    }, correlation_id=f"monitor-{use_case}-{window.deployment}-{end:%Y%m%dT%H%M%S}"[:128], source="monitoring")
    degraded = degraded.model_copy(update={"id": derived_event_id(
        degraded.type, environment, use_case, endpoint, window.deployment, end.isoformat())})
    if rollback != "requested":
        return [degraded]
    retire = degraded.follow_up(DeploymentTrafficRequested, {"use_case": use_case, "endpoint": endpoint,
                                                             "deployment": window.deployment, "action": "retire"})
    return [degraded, retire]


def _load(blobs: BlobStore, use_case: str) -> tuple[MonitorState, str | None]:
    try:
        data, etag = blobs.read(SYSTEM, monitoring_state_name(use_case))
    except BlobNotFound:
        return MonitorState(), None
    return MonitorState.model_validate_json(data), etag
