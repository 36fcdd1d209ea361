"""The diagnostic setting that sends an online endpoint's traffic log to Log Analytics, through the real
azure-mgmt-monitor client on a canned HTTP transport: what goes on the wire, and a refusal that never fails a
deployment."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.mgmt.monitor import MonitorManagementClient

from shared.deployment.endpoint_logs import SETTING_NAME, EndpointTrafficLogs, endpoint_traffic_logs
from tests.fakes.azure_sdk import ArmAdapter, FakeCredential, arm_transport

ENDPOINT = ("/subscriptions/0/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/mlw"
            "/onlineEndpoints/math-coding-dev-1a2b3c")
WORKSPACE = "/subscriptions/0/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/log-genaiops"


def traffic_logs(status: int, body: dict[str, Any]) -> tuple[EndpointTrafficLogs, ArmAdapter]:
    adapter = ArmAdapter(status, body)
    return EndpointTrafficLogs(MonitorManagementClient(FakeCredential(), "0", transport=arm_transport(adapter)),
                               WORKSPACE), adapter


def test_the_endpoint_gets_a_diagnostic_setting_sending_its_traffic_log_to_the_workspace() -> None:
    logs, arm = traffic_logs(200, {"id": f"{ENDPOINT}/providers/Microsoft.Insights/diagnosticSettings/x",
                                   "properties": {}})

    assert logs.ensure(ENDPOINT) is True

    [(method, url, body)] = arm.sent
    assert method == "PUT"
    assert url.startswith(f"https://management.azure.com{ENDPOINT}/providers/Microsoft.Insights/diagnosticSettings/"
                          f"{SETTING_NAME}?api-version=")
    assert body["properties"]["workspaceId"] == WORKSPACE
    assert body["properties"]["logs"] == [{"category": "AmlOnlineEndpointTrafficLog", "enabled": True}]
    assert body["properties"]["logAnalyticsDestinationType"] == "Dedicated"


def test_a_refused_setting_is_logged_and_does_not_fail_the_deployment(caplog: pytest.LogCaptureFixture) -> None:
    logs, _ = traffic_logs(403, {"error": {"code": "AuthorizationFailed", "message": "no diagnosticSettings/write"}})

    with caplog.at_level(logging.WARNING):
        assert logs.ensure(ENDPOINT) is False

    assert "AuthorizationFailed" in caplog.text
    assert "A/B report will have no rows" in caplog.text


def test_without_a_workspace_nothing_is_routed() -> None:
    assert endpoint_traffic_logs(FakeCredential(), "0", None) is None
    assert isinstance(endpoint_traffic_logs(FakeCredential(), "0", WORKSPACE), EndpointTrafficLogs)
