"""The A/B report's RequestTelemetry: the Log Analytics adapter at the SDK boundary (an autospec'd LogsQueryClient
answering with the SDK's own result types), the local router's adapter, and the composition root's choice per
target (the local target only from the factory the local stack names)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryPartialResult, LogsQueryResult, LogsTable
from azure.monitor.query._exceptions import LogsQueryError

from shared.deployment.port import DeploymentConfig, DeploymentTarget, OperationStatus
from shared.deployment.targets import LOCAL_ONLY, TargetAdapters, UnavailableTarget, local_target
from shared.feedback.azure_telemetry import LogAnalyticsTelemetry, traffic_query
from shared.feedback.endpoints import KnownEndpoint
from shared.feedback.telemetry import ServedRequest, TelemetryError
from shared.services.ab_testing import write_ab_report
from shared.settings import Settings
from tests.fakes.log_analytics import client_answering
from tests.fakes.memory import ManualClock, MemoryBlobStore

WORKSPACE = "00000000-1111-2222-3333-444444444444"
START = datetime(2026, 3, 1, tzinfo=UTC)
END = START + timedelta(days=30)
COLUMNS = ["TimeGenerated", "DeploymentName", "ResponseCode", "ResponseCodeReason", "TotalDurationMs", "XRequestId",
           "XMSClientRequestId"]
TYPES = ["datetime", "string", "int", "string", "int", "string", "string"]


def table(*rows: list[Any]) -> LogsTable:
    """The table the service sends back, as the SDK builds it from the wire (ISO times, typed columns)."""
    return LogsTable(name="PrimaryResult", columns=COLUMNS, columns_types=TYPES, rows=[list(row) for row in rows])


ROWS = [
    ["2026-03-02T10:00:01.5Z", "v2", 500, "Internal Server Error", 812, "req-2", "client-2"],
    ["2026-03-02T10:00:00Z", "v1", 200, "OK", 120, "req-1", ""],
    ["2026-03-02T10:00:02Z", "v1", 200, "OK", 95, "", "client-3"],
]


def test_the_query_names_the_endpoint_its_scoring_requests_and_the_window() -> None:
    client = client_answering(LogsQueryResult(tables=[table()]))

    LogAnalyticsTelemetry(client, WORKSPACE).served_requests("math-coding-dev", START, END)

    client.query_workspace.assert_called_once_with(WORKSPACE, (
        "AmlOnlineEndpointTrafficLog\n"
        '| where EndpointName == "math-coding-dev"\n'
        '| where Method == "POST" and Path startswith "/score"\n'
        "| project TimeGenerated, DeploymentName, ResponseCode, ResponseCodeReason, TotalDurationMs, XRequestId, "
        "XMSClientRequestId\n"
        "| order by TimeGenerated asc"), timespan=(START, END), server_timeout=60)


def test_one_deployment_and_quotes_in_names_are_kql_string_literals() -> None:
    query = traffic_query('we"ird\\name', deployment="v2")
    assert '| where EndpointName == "we\\"ird\\\\name"\n| where DeploymentName == "v2"\n' in query


def test_rows_become_served_requests_oldest_first() -> None:
    client = client_answering(LogsQueryResult(tables=[table(*ROWS)]))

    served = LogAnalyticsTelemetry(client, WORKSPACE).served_requests("math-coding-dev", START, END)

    assert served.warning is None
    assert served.requests == [
        ServedRequest(time=datetime(2026, 3, 2, 10, 0, tzinfo=UTC), endpoint="math-coding-dev", request_id="req-1",
                      deployment="v1", status=200, latency_ms=120.0),
        ServedRequest(time=datetime(2026, 3, 2, 10, 0, 1, 500000, tzinfo=UTC), endpoint="math-coding-dev",
                      request_id="req-2", deployment="v2", status=500, latency_ms=812.0,
                      error="Internal Server Error"),
        ServedRequest(time=datetime(2026, 3, 2, 10, 0, 2, tzinfo=UTC), endpoint="math-coding-dev",
                      request_id="client-3", deployment="v1", status=200, latency_ms=95.0),
    ]
    assert [r.ok for r in served.requests] == [True, False, True]


def test_a_partial_result_keeps_its_rows_and_says_why_they_may_be_incomplete() -> None:
    partial = LogsQueryPartialResult(partial_data=[table(ROWS[1])], partial_error=LogsQueryError(
        code="PartialError", message="Query exceeded the result size limit"))
    client = client_answering(partial)

    served = LogAnalyticsTelemetry(client, WORKSPACE).served_requests("math-coding-dev", START, END)

    assert [r.request_id for r in served.requests] == ["req-1"]
    assert served.warning == ("Log Analytics returned a partial result (PartialError: Query exceeded the result "
                              "size limit)")


def test_a_failed_query_is_a_telemetry_error_with_the_service_message() -> None:
    client = client_answering(HttpResponseError(message="(InsufficientAccessError) The provided credentials have "
                                                        "insufficient access\nmore detail"))

    with pytest.raises(TelemetryError, match=r"traffic failed: .*InsufficientAccessError.*insufficient access$"):
        LogAnalyticsTelemetry(client, WORKSPACE).served_requests("math-coding-dev", START, END)


def test_an_answer_without_the_traffic_columns_is_refused() -> None:
    client = client_answering(LogsQueryResult(tables=[LogsTable(name="PrimaryResult", columns=["x"],
                                                                columns_types=["string"], rows=[["1"]])]))

    with pytest.raises(TelemetryError, match="lacks column"):
        LogAnalyticsTelemetry(client, WORKSPACE).served_requests("math-coding-dev", START, END)


class _Deployer:
    def get_traffic(self, endpoint: str) -> dict[str, int]:
        return {"v1": 70, "v2": 30}


def test_the_ab_report_reads_the_window_before_now_and_carries_the_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    partial = LogsQueryPartialResult(partial_data=[table(*ROWS)],
                                     partial_error=LogsQueryError(code="PartialError", message="timeout"))
    client = client_answering(partial)
    written: dict[str, Any] = {}
    monkeypatch.setattr("shared.feedback.ab_report.write_ab_report",
                        lambda blobs, report: written.setdefault("report", report) and {})
    monkeypatch.setattr("shared.feedback.submissions.load_feedback", lambda blobs, use_case, endpoint: [])

    known = KnownEndpoint("math_coding", "math-coding-dev", _Deployer(),  # type: ignore[arg-type]
                          LogAnalyticsTelemetry(client, WORKSPACE))
    report, _ = write_ab_report(known, MemoryBlobStore(), ManualClock(END), window=timedelta(days=7))

    assert client.query_workspace.call_args.kwargs["timespan"] == (END - timedelta(days=7), END)
    assert {s.deployment: (s.requests, s.errors) for s in report.deployments} == {"v1": (2, 0), "v2": (1, 1)}
    assert report.telemetry_warning is not None
    assert "timeout" in report.telemetry_warning
    assert written["report"] is report


# --- the composition root ------------------------------------------------------------------------------------------

def _settings(tmp_path: Path, **values: str) -> Settings:
    return Settings.model_validate({"GENAIOPS_WORK_DIR": str(tmp_path), **values})


def test_without_the_factory_setting_the_local_target_is_unavailable(tmp_path: Path) -> None:
    adapters = local_target(None, _settings(tmp_path), object(), ManualClock(END))

    assert isinstance(adapters.deployer, UnavailableTarget)
    state = adapters.deployer.begin_endpoint(DeploymentConfig(target=DeploymentTarget.LOCAL,
                                                              endpoint_name="math-coding-dev"))
    assert state.status is OperationStatus.FAILED  # the deployment service rolls back at once, no retries
    assert LOCAL_ONLY in state.message
    with pytest.raises(TelemetryError, match=LOCAL_ONLY):
        adapters.telemetry.served_requests("math-coding-dev", START, END)


def test_a_package_without_localstack_gets_the_unavailable_target(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "localstack" or m.startswith("localstack.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "localstack", None)  # what the shipped package looks like: no such package

    adapters = local_target("localstack.deployment:build_local_target", _settings(tmp_path), object(), ManualClock(END))

    assert isinstance(adapters.deployer, UnavailableTarget)
    assert adapters.deployer.reason.startswith(f"{LOCAL_ONLY} (localstack")
    assert adapters.deployer.reason.endswith(" is not in this package)")


def test_the_local_stack_factory_builds_its_deployer_and_router_telemetry(tmp_path: Path) -> None:
    from localstack.deployment import FACTORY
    from localstack.deployment.local_deployer import LocalDeployer
    from localstack.deployment.telemetry import RouterTelemetry

    adapters = local_target(FACTORY, _settings(tmp_path, LOCAL_ROUTER_SEED="7"), object(), ManualClock(END))

    assert isinstance(adapters, TargetAdapters)
    assert isinstance(adapters.deployer, LocalDeployer)
    assert adapters.deployer.router_seed == 7
    assert isinstance(adapters.telemetry, RouterTelemetry)
    assert adapters.telemetry.deployer is adapters.deployer


def test_the_router_telemetry_reads_the_window_of_the_endpoint_log(tmp_path: Path) -> None:
    from localstack.deployment.telemetry import RouterTelemetry

    log = tmp_path / "telemetry.jsonl"
    records = [ServedRequest(time=START + timedelta(days=day), endpoint="e", request_id=f"r{day}",
                             deployment="v1" if day % 2 else "v2", status=200, latency_ms=10.0) for day in range(4)]
    log.write_text("".join(r.model_dump_json() + "\n" for r in reversed(records)) + '{"torn', encoding="utf-8")

    class Files:
        def telemetry_file(self, endpoint: str) -> Path:
            assert endpoint == "e"
            return log

    telemetry = RouterTelemetry(Files())
    window = telemetry.served_requests("e", START + timedelta(days=1), START + timedelta(days=3))
    assert [r.request_id for r in window.requests] == ["r1", "r2", "r3"]
    only_v1 = telemetry.served_requests("e", START, END, deployment="v1")
    assert [r.request_id for r in only_v1.requests] == ["r1", "r3"]


def test_the_composition_root_picks_telemetry_by_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import bootstrap

    monkeypatch.setattr("shared.adapters.credentials.azure_credential", object)
    managed = DeploymentConfig(target=DeploymentTarget.AML_MANAGED, endpoint_name="math-coding-dev")

    without = bootstrap.build_deployments(_settings(tmp_path), object(), ManualClock(END))  # type: ignore[arg-type]
    assert isinstance(without.telemetry_for(managed), UnavailableTarget)  # type: ignore[misc]

    bootstrap._log_analytics.cache_clear()
    monkeypatch.setattr(LogAnalyticsTelemetry, "from_credential",
                        classmethod(lambda cls, credential, workspace_id: cls(client_answering(None), workspace_id)))
    workspace = bootstrap.build_deployments(_settings(tmp_path, LOG_ANALYTICS_WORKSPACE_ID=WORKSPACE), object(),
                                            ManualClock(END))  # type: ignore[arg-type]
    telemetry = workspace.telemetry_for(managed)  # type: ignore[misc]
    assert isinstance(telemetry, LogAnalyticsTelemetry)
    assert telemetry.workspace_id == WORKSPACE
    local = DeploymentConfig(target=DeploymentTarget.LOCAL, endpoint_name="math-coding-dev")
    assert isinstance(workspace.telemetry_for(local), UnavailableTarget)  # type: ignore[misc]
    assert isinstance(workspace.deployer_for(local), UnavailableTarget)
    bootstrap._log_analytics.cache_clear()
