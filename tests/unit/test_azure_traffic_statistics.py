"""The production monitor on Azure ML targets: error rate and latency per deployment from the endpoints' traffic log
in Log Analytics, summarized by the query — at the SDK boundary (an autospec'd LogsQueryClient answering with the
SDK's own result types) and through monitor_production, where a breach becomes deployment.degraded; the deployer is
the real Azure ML one on the in-memory workspace (tests/fakes/azure_sdk.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import ManagedOnlineEndpoint
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryPartialResult, LogsQueryResult, LogsTable
from azure.monitor.query._exceptions import LogsQueryError

from shared.deployment.azureml_deployer import ManagedOnlineDeployer
from shared.deployment.port import DeploymentConfig, DeploymentTarget
from shared.experiments.config import load_experiment
from shared.feedback.telemetry import TelemetryError
from shared.monitoring.azure_traffic import LogAnalyticsTrafficStatistics, window_query
from shared.monitoring.window import LogTrafficStatistics
from shared.services.deployment_settings import deployment_config
from shared.services.deployments import DeploymentWorkspace
from shared.services.monitoring import monitor_production, traffic_statistics_for
from shared.settings import Settings
from shared.smoke.tester import SmokeTester
from tests.e2e.production import monitored_copy
from tests.fakes.azure_sdk import AzureMLWorkspace, FakeCredential
from tests.fakes.log_analytics import client_answering
from tests.fakes.memory import ManualClock, MemoryBlobStore, RecordingPublisher

LOG_ANALYTICS = "3d4e5f60-7182-4a3b-9c4d-5e6f708192a3"
START = datetime(2026, 5, 6, 7, 0, tzinfo=UTC)
END = START + timedelta(minutes=5)
COLUMNS = ["DeploymentName", "Requests", "Errors", "LatencyP50", "LatencyP95", "LatencyP99"]
TYPES = ["string", "long", "long", "long", "long", "long"]


def summary(*rows: list[Any]) -> LogsTable:
    """The summarize's answer as the SDK builds it from the wire: one row per deployment."""
    return LogsTable(name="PrimaryResult", columns=COLUMNS, columns_types=TYPES, rows=[list(row) for row in rows])


def test_the_query_summarizes_the_endpoints_scoring_requests_of_the_window_per_deployment() -> None:
    client = client_answering(LogsQueryResult(tables=[summary()]))

    assert LogAnalyticsTrafficStatistics(client, LOG_ANALYTICS).statistics("uc", "math-coding-dev", START, END) == {}

    client.query_workspace.assert_called_once_with(LOG_ANALYTICS, (
        "AmlOnlineEndpointTrafficLog\n"
        "| where TimeGenerated between (datetime(2026-05-06T07:00:00.000000Z) .. "
        "datetime(2026-05-06T07:05:00.000000Z))\n"
        '| where EndpointName == "math-coding-dev" and isnotempty(DeploymentName)\n'
        '| where Method == "POST" and Path startswith "/score"\n'
        "| summarize Requests = count(), Errors = countif(ResponseCode >= 500 or ResponseCode in (408, 424, 429)), "
        "LatencyP50 = percentile(TotalDurationMs, 50), LatencyP95 = percentile(TotalDurationMs, 95), "
        "LatencyP99 = percentile(TotalDurationMs, 99) by DeploymentName"), timespan=(START, END), server_timeout=60)
    assert '== "we\\"ird"' in window_query('we"ird', START, END)  # a name is a KQL string literal


def test_summary_rows_become_deployment_windows() -> None:
    client = client_answering(LogsQueryResult(tables=[summary(
        ["blue", 40, 0, 120, 300, 410], ["green", 20, 5, 900, 2400, 2900], ["idle", 0, 0, None, None, None])]))

    windows = LogAnalyticsTrafficStatistics(client, LOG_ANALYTICS).statistics("uc", "ep", START, END)

    assert set(windows) == {"blue", "green"}  # a deployment without requests has no window
    green = windows["green"]
    assert (green.requests, green.errors, green.error_rate) == (20, 5, 0.25)
    assert (green.latency_p50_ms, green.latency_p95_ms, green.latency_p99_ms) == (900.0, 2400.0, 2900.0)
    assert windows["blue"].error_rate == 0.0


@pytest.mark.parametrize(("answer", "problem"), [
    (LogsQueryPartialResult(partial_data=[summary(["blue", 3, 0, 1, 1, 1])],
                            partial_error=LogsQueryError(code="PartialError", message="timeout")),
     "partial result \\(PartialError: timeout\\)"),
    (HttpResponseError(message="(InsufficientAccessError) no access\nmore"),
     "traffic statistics failed: \\(InsufficientAccessError\\) no access$"),
    (LogsQueryResult(tables=[LogsTable(name="PrimaryResult", columns=["DeploymentName"], columns_types=["string"],
                                       rows=[["blue"]])]), "lacks column\\(s\\) Requests, Errors"),
])
def test_a_partial_failed_or_unexpected_answer_is_no_verdict(answer: Any, problem: str) -> None:
    with pytest.raises(TelemetryError, match=problem):
        LogAnalyticsTrafficStatistics(client_answering(answer), LOG_ANALYTICS).statistics("uc", "ep", START, END)


# --- through the monitor ------------------------------------------------------------------------------------------

DEV_MONITORING = """
monitoring:
  schedule: "0 * * * * *"
  window_minutes: 5
  min_requests: 10
  max_error_rate: 0.1
  latency_p95_ms: 2000
  auto_rollback: true
"""
WORKSPACE = {"AZURE_SUBSCRIPTION_ID": "8f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b", "AZURE_RESOURCE_GROUP": "rg-genaiops-dev",
             "AZUREML_WORKSPACE_NAME": "mlw-genaiops-dev-7q2"}


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    root = monitored_copy(tmp_path / "flows", "watched", "")
    (root / "watched" / "experiment.dev.yaml").write_text(DEV_MONITORING)
    return root


def monitor_once(flows: Path, tmp_path: Path, settings: Settings, client: Any,
                 traffic: dict[str, int]) -> tuple[list[Any], str]:
    """One tick of the monitor on dev's Azure ML target, whose endpoint splits `traffic`; returns the events and the
    endpoint the monitor looked at."""
    aml = AzureMLWorkspace(tmp_path / "aml")
    ml_client = aml.attach(MLClient(FakeCredential(), WORKSPACE["AZURE_SUBSCRIPTION_ID"],
                                    WORKSPACE["AZURE_RESOURCE_GROUP"], WORKSPACE["AZUREML_WORKSPACE_NAME"]))
    endpoint = deployment_config(load_experiment(flows / "watched", "dev", local=False), "dev", WORKSPACE).endpoint_name
    aml.endpoints[endpoint] = ManagedOnlineEndpoint(name=endpoint, traffic=traffic)
    deployer = ManagedOnlineDeployer(ml_client, work_dir=tmp_path / "work", app_settings=WORKSPACE)
    blobs, clock = MemoryBlobStore(), ManualClock(datetime(2026, 5, 6, 7, 5, 30, tzinfo=UTC))
    workspace = DeploymentWorkspace(flows_root=flows, work_root=tmp_path / "work", deployer_for=lambda _: deployer,
                                    tester=SmokeTester(blobs, clock), app_settings=WORKSPACE, local_stack=False)
    statistics = LogAnalyticsTrafficStatistics(client, LOG_ANALYTICS)
    return monitor_production(blobs, RecordingPublisher(), clock, workspace, settings,
                              lambda config: statistics if config.target is DeploymentTarget.AML_MANAGED else None), \
        endpoint


def test_a_breach_in_the_traffic_log_degrades_the_deployment_and_retires_it(flows: Path, tmp_path: Path) -> None:
    client = client_answering(LogsQueryResult(tables=[summary(
        ["blue", 90, 1, 100, 250, 400], ["green", 30, 6, 800, 2600, 3100])]))
    settings = Settings(environment="dev", log_analytics_workspace_id=LOG_ANALYTICS, **WORKSPACE)

    events, endpoint = monitor_once(flows, tmp_path, settings, client, {"blue": 75, "green": 25})

    query = client.query_workspace.call_args.args[1]
    assert f'EndpointName == "{endpoint}"' in query  # the endpoint named from Settings' workspace
    assert "datetime(2026-05-06T07:00:00.000000Z) .. datetime(2026-05-06T07:05:00.000000Z)" in query
    assert [event.type for event in events] == ["deployment.degraded", "deployment.traffic_requested"]
    degraded = events[0].payload
    assert (degraded.deployment, degraded.rollback, degraded.endpoint) == ("green", "requested", endpoint)
    assert degraded.breaches == ["error rate 20.0% (6/30) > 10.0%", "latency p95 2600 ms > 2000 ms"]
    assert (degraded.window.requests, degraded.window.latency_p99_ms) == (30, 3100.0)
    assert events[1].payload.deployment == "green"


def test_a_deployment_without_traffic_share_is_not_judged(flows: Path, tmp_path: Path) -> None:
    client = client_answering(LogsQueryResult(tables=[summary(["green", 30, 30, 800, 2600, 3100])]))
    settings = Settings(environment="dev", log_analytics_workspace_id=LOG_ANALYTICS, **WORKSPACE)

    events, _ = monitor_once(flows, tmp_path, settings, client, {"blue": 100, "green": 0})

    assert events == []  # green's failures are smoke tests pinned to it, not users' requests


def test_the_monitor_reads_azure_ml_traffic_from_log_analytics_and_warns_once_without_it(
        caplog: pytest.LogCaptureFixture) -> None:
    blobs = MemoryBlobStore()
    azure = DeploymentConfig(target="aml_managed", endpoint_name="math-ep")
    configured = traffic_statistics_for(blobs, Settings(environment="dev", log_analytics_workspace_id=LOG_ANALYTICS))
    statistics = configured(azure)
    assert isinstance(statistics, LogAnalyticsTrafficStatistics)
    assert statistics.workspace_id == LOG_ANALYTICS
    assert isinstance(configured(DeploymentConfig(target="local", endpoint_name="math-ep")), LogTrafficStatistics)
    assert configured(DeploymentConfig(target="container", endpoint_name="math-ep")) is None

    unconfigured = traffic_statistics_for(blobs, Settings(environment="dev", log_analytics_workspace_id=None))
    with caplog.at_level(logging.WARNING, logger="genaiops.monitoring"):
        assert unconfigured(azure) is None
        assert unconfigured(DeploymentConfig(target="aml_kubernetes", endpoint_name="other-ep", compute="k8s")) is None
    assert [record.getMessage() for record in caplog.records] == [
        "monitoring skips error rate and latency of Azure ML endpoints: LOG_ANALYTICS_WORKSPACE_ID is not set "
        "(their traffic log in that Log Analytics workspace is where both come from)"]
