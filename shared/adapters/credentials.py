"""The Azure credential for identity-based connections.

In Azure Pipelines with workload identity federation, the az CLI token a DefaultAzureCredential would use
expires after about an hour, shorter than a pipeline's `wait`; AzurePipelinesCredential refreshes itself."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

PIPELINE_VARIABLES = ("AZURESUBSCRIPTION_CLIENT_ID", "AZURESUBSCRIPTION_TENANT_ID",
                      "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "SYSTEM_ACCESSTOKEN")


def azure_credential() -> TokenCredential:
    if all(os.environ.get(name) for name in PIPELINE_VARIABLES):
        from azure.identity import AzurePipelinesCredential

        return AzurePipelinesCredential(
            tenant_id=os.environ["AZURESUBSCRIPTION_TENANT_ID"],
            client_id=os.environ["AZURESUBSCRIPTION_CLIENT_ID"],
            service_connection_id=os.environ["AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"],
            system_access_token=os.environ["SYSTEM_ACCESSTOKEN"],
        )
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
