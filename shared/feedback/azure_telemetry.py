"""RequestTelemetry for Azure ML online endpoints: the endpoint's traffic log in Log Analytics.

An Azure ML workspace whose diagnostic settings send the `AmlOnlineEndpointTrafficLog` category to a Log Analytics
workspace gets one row per request to its online endpoints (EndpointName, DeploymentName, Method, Path,
ResponseCode, TotalDurationMs, XRequestId, ...). This adapter queries it with azure-monitor-query's LogsQueryClient
(the app's identity needs Log Analytics Reader on the workspace); the workspace's id is the app setting
LOG_ANALYTICS_WORKSPACE_ID.

The log does not record the `azureml-model-deployment` header, so requests pinned to a deployment (smoke tests)
count as that deployment's traffic here; the router's log (local target) tells them apart.
The SDK is imported on first use.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.feedback.telemetry import ServedRequest, ServedRequests, TelemetryError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.monitor.query import LogsQueryClient, LogsTable

__all__ = ["LOG_ANALYTICS_WORKSPACE_SETTING", "SCORE_PATH", "TRAFFIC_TABLE", "LogAnalyticsTelemetry", "kql_string",
           "query_tables", "traffic_query"]

LOG_ANALYTICS_WORKSPACE_SETTING = "LOG_ANALYTICS_WORKSPACE_ID"
TRAFFIC_TABLE = "AmlOnlineEndpointTrafficLog"
SCORE_PATH = "/score"
COLUMNS = ("TimeGenerated", "DeploymentName", "ResponseCode", "ResponseCodeReason", "TotalDurationMs", "XRequestId",
           "XMSClientRequestId")
_log = logging.getLogger(__name__)


def kql_string(value: str) -> str:
    """A KQL string literal: double quotes, backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def traffic_query(endpoint: str, deployment: str | None = None) -> str:
    """The KQL for one endpoint's scoring requests (of one deployment when named), oldest first."""
    lines = [TRAFFIC_TABLE, f"| where EndpointName == {kql_string(endpoint)}"]
    if deployment is not None:
        lines.append(f"| where DeploymentName == {kql_string(deployment)}")
    lines += [f'| where Method == "POST" and Path startswith {kql_string(SCORE_PATH)}',
              f"| project {', '.join(COLUMNS)}",
              "| order by TimeGenerated asc"]
    return "\n".join(lines)


class LogAnalyticsTelemetry:
    live = False  # rows arrive minutes after the request (ingestion latency)

    def __init__(self, client: LogsQueryClient, workspace_id: str, *, server_timeout_seconds: int = 60) -> None:
        self.client = client
        self.workspace_id = workspace_id
        self.server_timeout_seconds = server_timeout_seconds

    @classmethod
    def from_credential(cls, credential: TokenCredential, workspace_id: str) -> LogAnalyticsTelemetry:
        from azure.monitor.query import LogsQueryClient

        return cls(LogsQueryClient(credential), workspace_id)

    def served_requests(self, endpoint: str, start: datetime, end: datetime, *,
                        deployment: str | None = None) -> ServedRequests:
        tables, warning = query_tables(self.client, self.workspace_id, traffic_query(endpoint, deployment),
                                       (start, end), self.server_timeout_seconds, f"endpoint {endpoint}'s traffic")
        if warning is not None:
            _log.warning("A/B telemetry for %s: %s", endpoint, warning)
        requests = [record for table in tables for record in _records(table, endpoint)]
        return ServedRequests(requests=sorted(requests, key=lambda r: r.time), warning=warning)


def query_tables(client: LogsQueryClient, workspace_id: str, query: str, timespan: tuple[datetime, datetime],
                 server_timeout_seconds: int, what: str) -> tuple[list[LogsTable], str | None]:
    """The answer's tables, and a warning when Log Analytics returned only part of them; TelemetryError when the
    query failed (bad query, no access, network)."""
    from azure.core.exceptions import AzureError
    from azure.monitor.query import LogsQueryStatus

    try:
        result = client.query_workspace(workspace_id, query, timespan=timespan, server_timeout=server_timeout_seconds)
    except AzureError as failure:  # HttpResponseError (bad query, no access), network errors
        raise TelemetryError(f"Log Analytics query of {what} failed: {_first_line(failure)}") from None
    if result.status == LogsQueryStatus.PARTIAL:
        error = result.partial_error
        return result.partial_data or [], (
            f"Log Analytics returned a partial result ({getattr(error, 'code', '') or 'PartialError'}: "
            f"{getattr(error, 'message', '') or 'no message'})")
    if result.status == LogsQueryStatus.SUCCESS:
        return result.tables, None
    # FAILURE is only returned inside batch queries; never guess
    raise TelemetryError(f"Log Analytics query of {what}: status {result.status}")


def _records(table: LogsTable, endpoint: str) -> list[ServedRequest]:
    missing = [name for name in ("TimeGenerated", "ResponseCode", "TotalDurationMs") if name not in table.columns]
    if missing:
        raise TelemetryError(f"{TRAFFIC_TABLE} answer lacks column(s) {', '.join(missing)}")
    records = []
    for row in table.rows:
        values: dict[str, Any] = {name: row[name] for name in table.columns}
        status = int(values["ResponseCode"] or 0)
        time = values["TimeGenerated"]
        if not isinstance(time, datetime):
            time = datetime.fromisoformat(str(time).replace("Z", "+00:00"))
        reason = values.get("ResponseCodeReason")
        records.append(ServedRequest(
            time=time, endpoint=endpoint,
            request_id=str(values.get("XRequestId") or values.get("XMSClientRequestId") or f"row-{row.index}"),
            deployment=values.get("DeploymentName") or None, status=status,
            latency_ms=float(values["TotalDurationMs"] or 0),
            error=None if 200 <= status < 300 or not reason else str(reason),
        ))
    return records


def _first_line(failure: Exception) -> str:
    text = str(getattr(failure, "message", None) or failure)
    return text.splitlines()[0][:500] if text else type(failure).__name__
