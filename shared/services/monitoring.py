"""The production monitor: on each timer tick, every use case with a `monitoring:` block whose schedule fired is
looked at — error rate and latency percentiles per deployment over the sliding window, from the target's traffic
statistics (`traffic_statistics_for`): the local routers' production log, or an Azure ML endpoint's traffic log in
Log Analytics.
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
from shared.monitoring.window import DeploymentWindow, LogTrafficStatistics, TrafficStatistics, breaches
from shared.ports import BlobNotFound, BlobStore, Clock, EventPublisher, PreconditionFailed
from shared.services.deployment_settings import deployment_config
from shared.services.deployments import DeploymentWorkspace
from shared.settings import Settings

log = logging.getLogger("genaiops.monitoring")

LogFor = Callable[[DeploymentConfig], ProductionLog | None]
TrafficFor = Callable[[DeploymentConfig], TrafficStatistics | None]
AZURE_ML_TARGETS = (DeploymentTarget.AML_MANAGED, DeploymentTarget.AML_KUBERNETES)


class MonitorState(BaseModel):
    last_run: datetime | None = Field(default=None, description="The last schedule firing evaluated")
    reported: dict[str, datetime] = Field(default_factory=dict, description="endpoint/deployment -> window end")


def production_log_for(blobs: BlobStore, collector_container_url: str | None) -> LogFor:
    """The production log of a target: the routers' blobs locally, the data collector's output on Azure ML (when
    its container is configured: AZUREML_DATA_COLLECTOR_CONTAINER_URL), none for a container target."""
    def log_for(settings: DeploymentConfig) -> ProductionLog | None:
        if settings.target is DeploymentTarget.LOCAL:
            return BlobProductionLog(blobs)
        if settings.target in AZURE_ML_TARGETS:
            from shared.monitoring.azureml_production_log import AzureMLProductionLog

            return AzureMLProductionLog.from_container_url(collector_container_url)
        return None

    return log_for


def traffic_statistics_for(blobs: BlobStore, settings: Settings) -> TrafficFor:
    """Where a target's error rate and latency come from: the routers' production log locally (it records status
    and latency); on Azure ML the endpoint's traffic log in Log Analytics, as the data collector records neither;
    none for a container target. Without LOG_ANALYTICS_WORKSPACE_ID, Azure ML targets are skipped with one warning
    per tick."""
    warned = False

    def statistics_for(config: DeploymentConfig) -> TrafficStatistics | None:
        nonlocal warned
        if config.target is DeploymentTarget.LOCAL:
            return LogTrafficStatistics(BlobProductionLog(blobs))
        if config.target in AZURE_ML_TARGETS:
            if settings.log_analytics_workspace_id:
                from shared.monitoring.azure_traffic import log_analytics_traffic

                return log_analytics_traffic(settings.log_analytics_workspace_id)
            if not warned:
                warned = True
                log.warning("monitoring skips error rate and latency of Azure ML endpoints: LOG_ANALYTICS_WORKSPACE_ID "
                            "is not set (their traffic log in that Log Analytics workspace is where both come from)")
        return None

    return statistics_for


def monitor_production(blobs: BlobStore, publisher: EventPublisher, clock: Clock, workspace: DeploymentWorkspace,
                       settings: Settings, traffic_for: TrafficFor) -> list[Event]:
    """One tick over every use case; returns what was published. A use case that fails is logged and skipped: the
    next firing tries again."""
    published: list[Event] = []
    for use_case in find_use_cases(workspace.flows_root):
        try:
            config = load_experiment(workspace.flows_root / use_case, settings.environment,
                                     local=settings.local_stack)
        except ExperimentConfigError as broken:
            log.warning("monitoring skips %s: its experiment.yaml does not load: %s", use_case, broken)
            continue
        if config.monitoring is None:
            continue
        try:
            published += monitor_use_case(use_case, config, config.monitoring, blobs, publisher, clock, workspace,
                                          settings, traffic_for)
        except (DeploymentError, ExperimentConfigError) as failure:  # the statistics unreadable, a broken block
            log.warning("monitoring of %s failed this time: %s", use_case, failure)
    return published


def monitor_use_case(use_case: str, config: ExperimentConfig, monitoring: MonitoringConfig, blobs: BlobStore,
                     publisher: EventPublisher, clock: Clock, workspace: DeploymentWorkspace, settings: Settings,
                     traffic_for: TrafficFor) -> list[Event]:
    state, etag = _load(blobs, use_case)
    fired = croniter(monitoring.schedule, clock.now(), second_at_beginning=True).get_prev(datetime)
    if state.last_run is not None and fired <= state.last_run:
        return []  # this firing was evaluated already
    environment = settings.environment
    target = deployment_config(config, environment, workspace.app_settings)
    traffic_statistics = traffic_for(target)
    events: list[Event] = []
    if traffic_statistics is not None:
        try:
            traffic = workspace.deployer_for(target).get_traffic(target.endpoint_name)
        except EndpointNotFound:
            traffic = {}  # nothing deployed yet
        start = fired - monitoring.window
        windows = traffic_statistics.statistics(use_case, target.endpoint_name, start, fired)
        for name, window in windows.items():
            key = f"{target.endpoint_name}/{name}"
            reported = state.reported.get(key)
            if traffic.get(name, 0) <= 0 or (reported is not None and fired - reported < monitoring.window):
                continue
            found = breaches(window, monitoring)
            if found:
                events += _degraded(use_case, target.endpoint_name, environment, window, found, start, fired,
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
