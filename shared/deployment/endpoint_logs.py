"""Sends an online endpoint's request log to the Log Analytics workspace the A/B report reads.

Azure ML writes an endpoint's requests (the AmlOnlineEndpointTrafficLog category) only where that endpoint has a
diagnostic setting, and the endpoints are created by this app, not by Terraform — so the app adds the setting once
an endpoint exists. The call is a PUT of a fixed name: repeating it changes nothing, and doing it on every
deployment puts back a setting someone removed. Needs Monitoring Contributor on the Azure ML workspace and the Log
Analytics workspace (infra/rbac.tf). azure-mgmt-monitor is imported on first use.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from azure.core.exceptions import AzureError

from shared.redaction import redact_text

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.mgmt.monitor import MonitorManagementClient

__all__ = ["SETTING_NAME", "TRAFFIC_LOG_CATEGORY", "EndpointTrafficLogs", "endpoint_traffic_logs"]

TRAFFIC_LOG_CATEGORY = "AmlOnlineEndpointTrafficLog"
SETTING_NAME = "genaiops-endpoint-traffic"
log = logging.getLogger(__name__)


class EndpointTrafficLogs:
    def __init__(self, monitor: MonitorManagementClient, workspace_resource_id: str) -> None:
        self._monitor = monitor
        self._workspace = workspace_resource_id

    def ensure(self, endpoint_resource_id: str) -> bool:
        """Route the endpoint's traffic log to the workspace; False (logged) when Azure refused. A missing log
        costs the A/B report its rows, not the deployment, so it never fails one."""
        from azure.mgmt.monitor.v2021_05_01_preview.models import DiagnosticSettingsResource, LogSettings
        from azure.mgmt.monitor.v2021_05_01_preview.operations import DiagnosticSettingsOperations

        # The client's default API version for this group; the only one with a resource-specific destination.
        operations = cast(DiagnosticSettingsOperations, self._monitor.diagnostic_settings)

        setting = DiagnosticSettingsResource(
            workspace_id=self._workspace, logs=[LogSettings(category=TRAFFIC_LOG_CATEGORY, enabled=True)],
            # Resource-specific table (AmlOnlineEndpointTrafficLog), the one the A/B report queries.
            log_analytics_destination_type="Dedicated")
        try:
            operations.create_or_update(resource_uri=endpoint_resource_id, name=SETTING_NAME, parameters=setting)
        except AzureError as error:
            log.warning("endpoint %s: traffic log not routed to Log Analytics (the A/B report will have no rows): "
                        "%s", endpoint_resource_id, redact_text(str(error))[:500])
            return False
        return True


def endpoint_traffic_logs(credential: TokenCredential, subscription_id: str | None,
                          workspace_resource_id: str | None) -> EndpointTrafficLogs | None:
    """None without a Log Analytics workspace to send to (LOG_ANALYTICS_WORKSPACE_RESOURCE_ID unset)."""
    if not (workspace_resource_id and subscription_id):
        return None
    from azure.mgmt.monitor import MonitorManagementClient

    return EndpointTrafficLogs(MonitorManagementClient(credential, subscription_id), workspace_resource_id)
