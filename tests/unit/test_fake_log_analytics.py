"""The fake Log Analytics (tests/fakes/log_analytics.py) answers the app's own KQL as the service would: the packaged
test's monitor verdict is only as good as this summary, so it is checked against rows whose answer is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.feedback.azure_telemetry import LogAnalyticsTelemetry
from shared.monitoring.azure_traffic import LogAnalyticsTrafficStatistics, window_query
from tests.fakes.log_analytics import run_query, seed_rows, seeded_rows

END = datetime(2026, 5, 6, 7, 15, tzinfo=UTC)
START = END - timedelta(minutes=15)


def row(deployment: str, status: int, ms: int, *, at: datetime = END - timedelta(minutes=1), endpoint: str = "ep",
        method: str = "POST", path: str = "/score") -> dict[str, Any]:
    return {"TimeGenerated": at.isoformat(), "EndpointName": endpoint, "DeploymentName": deployment,
            "Method": method, "Path": path, "ResponseCode": status, "ResponseCodeReason": "", "TotalDurationMs": ms,
            "XRequestId": f"{deployment}-{status}-{ms}", "XMSClientRequestId": ""}


ROWS = [
    *(row("v-2", 200, ms) for ms in (100, 200, 300, 400, 500, 600)),
    row("v-2", 500, 700), row("v-2", 424, 800), row("v-2", 429, 900), row("v-2", 408, 1000),
    row("v-2", 404, 50), row("v-2", 401, 60),  # the callers' mistakes: requests, not errors
    row("v-1", 200, 80),
    # Not the window's scoring requests of this endpoint's deployments:
    row("v-2", 500, 1, at=START - timedelta(seconds=1)), row("v-2", 500, 1, at=END + timedelta(seconds=1)),
    row("v-2", 500, 1, endpoint="other"), row("v-2", 500, 1, method="GET"), row("v-2", 500, 1, path="/health"),
    row("", 429, 1),  # refused at the endpoint, before any deployment
]


class Client:
    """Just the call the app makes, answered by the fake."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def query_workspace(self, workspace_id: str, query: str, *, timespan: Any, server_timeout: int) -> Any:
        return run_query(query, self.rows, timespan)


def test_the_monitors_summary_counts_the_windows_scoring_requests_and_its_errors_per_deployment() -> None:
    windows = LogAnalyticsTrafficStatistics(Client(ROWS), "ws").statistics("uc", "ep", START, END)  # type: ignore[arg-type]

    assert set(windows) == {"v-1", "v-2"}
    v2 = windows["v-2"]
    assert (v2.requests, v2.errors) == (12, 4)
    # Nearest rank of the 12 durations 50, 60, 100 ... 1000.
    assert (v2.latency_p50_ms, v2.latency_p95_ms, v2.latency_p99_ms) == (400, 1000, 1000)
    assert (windows["v-1"].requests, windows["v-1"].errors) == (1, 0)


def test_the_summary_comes_back_typed_as_the_service_reports_it() -> None:
    [table] = run_query(window_query("ep", START, END), ROWS, (START, END)).tables
    assert table.columns == ["DeploymentName", "Requests", "Errors", "LatencyP50", "LatencyP95", "LatencyP99"]
    assert table.columns_types == ["string", "long", "long", "long", "long", "long"]


def test_the_ab_reports_projection_reads_rows_with_their_times(tmp_path: Path) -> None:
    seed_rows(tmp_path, ROWS[:2])  # as a test in another process adds them

    served = LogAnalyticsTelemetry(Client(seeded_rows(tmp_path)), "ws").served_requests(  # type: ignore[arg-type]
        "ep", START, END)

    assert [(r.deployment, r.status, r.latency_ms) for r in served.requests] == [("v-2", 200, 100), ("v-2", 200, 200)]
    assert served.requests[0].time == END - timedelta(minutes=1)


@pytest.mark.parametrize("query", [
    "AmlOnlineEndpointTrafficLog | take 5",
    "AmlOnlineEndpointTrafficLog | where ResponseCode matches regex '5..'",
    "AppRequests | where Success == false",
])
def test_kql_the_fake_does_not_know_fails_loudly(query: str) -> None:
    with pytest.raises(NotImplementedError):
        run_query(query, ROWS)
