"""TrafficStatistics of Azure ML online endpoints: their AmlOnlineEndpointTrafficLog in Log Analytics (routed there
by shared/deployment/endpoint_logs.py), summarized per deployment by the query itself — one row per deployment comes
back, never the window's requests. The data collector's blobs record payloads, not status or latency, so error rate
and latency on Azure come from here; post-production evaluation keeps reading the payloads
(shared/monitoring/azureml_production_log.py).

What counts as an error is what Azure ML answers when the deployment did not serve the request
(https://learn.microsoft.com/azure/machine-learning/how-to-troubleshoot-online-endpoints#http-status-codes):
any 5xx, 408 (the model exceeded request_timeout_ms), 424 (the model container answered non-2xx; its own code is
ModelStatusCode) and 429 (too many pending requests, or the endpoint's rate limit). 401/404 are the caller's
mistakes, not the deployment's. Latency is TotalDurationMs; the percentiles are Log Analytics' `percentile()`
(an estimate, where the local log's interpolate). The log does not record the azureml-model-deployment header, so
smoke-test requests pinned to a deployment count here (the local log leaves them out).
The app's identity needs Log Analytics Reader on the workspace (infra/rbac.tf). The SDK is imported on first use.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared.feedback.azure_telemetry import SCORE_PATH, TRAFFIC_TABLE, kql_string, query_tables
from shared.feedback.telemetry import TelemetryError
from shared.monitoring.window import DeploymentWindow

if TYPE_CHECKING:
    from azure.monitor.query import LogsQueryClient, LogsTable

FAILED = "ResponseCode >= 500 or ResponseCode in (408, 424, 429)"
SUMMARY_COLUMNS = ("DeploymentName", "Requests", "Errors", "LatencyP50", "LatencyP95", "LatencyP99")


def _kql_datetime(moment: datetime) -> str:
    return f"datetime({moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ})"


def window_query(endpoint: str, start: datetime, end: datetime) -> str:
    """The KQL summarizing one endpoint's scoring requests from `start` to `end` (inclusive) per deployment."""
    return "\n".join([
        TRAFFIC_TABLE,
        f"| where TimeGenerated between ({_kql_datetime(start)} .. {_kql_datetime(end)})",
        f"| where EndpointName == {kql_string(endpoint)} and isnotempty(DeploymentName)",
        f'| where Method == "POST" and Path startswith {kql_string(SCORE_PATH)}',
        f"| summarize Requests = count(), Errors = countif({FAILED}), LatencyP50 = percentile(TotalDurationMs, 50), "
        "LatencyP95 = percentile(TotalDurationMs, 95), LatencyP99 = percentile(TotalDurationMs, 99) by DeploymentName",
    ])


class LogAnalyticsTrafficStatistics:
    def __init__(self, client: LogsQueryClient, workspace_id: str, *, server_timeout_seconds: int = 60) -> None:
        self.client = client
        self.workspace_id = workspace_id
        self.server_timeout_seconds = server_timeout_seconds

    def statistics(self, use_case: str, endpoint: str, start: datetime, end: datetime) -> dict[str, DeploymentWindow]:
        what = f"endpoint {endpoint}'s traffic statistics"
        tables, partial = query_tables(self.client, self.workspace_id, window_query(endpoint, start, end),
                                       (start, end), self.server_timeout_seconds, what)
        if partial is not None:  # a verdict on part of the window could be wrong either way: the next firing retries
            raise TelemetryError(f"{what}: {partial}")
        return {window.deployment: window for table in tables for window in _windows(table)}


def _windows(table: LogsTable) -> list[DeploymentWindow]:
    missing = [name for name in SUMMARY_COLUMNS if name not in table.columns]
    if missing:
        raise TelemetryError(f"{TRAFFIC_TABLE} summary lacks column(s) {', '.join(missing)}")
    windows = []
    for row in table.rows:
        values: dict[str, Any] = {name: row[name] for name in table.columns}
        requests, errors = int(values["Requests"] or 0), int(values["Errors"] or 0)
        if requests <= 0:
            continue
        windows.append(DeploymentWindow(
            deployment=str(values["DeploymentName"]), requests=requests, errors=errors, error_rate=errors / requests,
            latency_p50_ms=_number(values["LatencyP50"]), latency_p95_ms=_number(values["LatencyP95"]),
            latency_p99_ms=_number(values["LatencyP99"])))
    return windows


def _number(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


@lru_cache(maxsize=4)
def log_analytics_traffic(workspace_id: str) -> LogAnalyticsTrafficStatistics:
    """The adapter on the app's identity, one client per workspace for the process."""
    from azure.monitor.query import LogsQueryClient

    from shared.adapters.credentials import azure_credential

    return LogAnalyticsTrafficStatistics(LogsQueryClient(azure_credential()), workspace_id)
