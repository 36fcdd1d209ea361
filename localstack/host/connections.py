"""Binding connections, resolved from app settings the way the Functions host does.

A connection named `X` is either a connection string in the setting `X` (the local stack), or identity-based:
`X__blobServiceUri` / `X__accountName` for storage, `X__fullyQualifiedNamespace` for Service Bus, authenticated
with the app's identity (DefaultAzureCredential) — the form Terraform writes for Azure. An empty `X` counts as
unset, as for the real host (infra/functionapp.tf sets AzureWebJobsStorage = "").
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from localstack.host.loader import HostConfigError

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient
    from azure.storage.blob import BlobServiceClient

HOST_STORAGE = "AzureWebJobsStorage"


def _setting(name: str) -> str:
    return os.environ.get(name, "").strip()


def blob_service(connection: str = HOST_STORAGE) -> BlobServiceClient:
    from azure.storage.blob import BlobServiceClient

    if _setting(connection):
        return BlobServiceClient.from_connection_string(_setting(connection))
    account_url = _setting(f"{connection}__blobServiceUri")
    if not account_url and _setting(f"{connection}__accountName"):
        account_url = f"https://{_setting(f'{connection}__accountName')}.blob.core.windows.net"
    if not account_url:
        raise HostConfigError(f"storage connection {connection!r} is not set: give {connection} (connection string) "
                              f"or {connection}__blobServiceUri / {connection}__accountName (identity)")
    from azure.identity import DefaultAzureCredential

    return BlobServiceClient(account_url=account_url, credential=DefaultAzureCredential())


def servicebus_client(connection: str) -> ServiceBusClient:
    """A new client per call: the trigger reconnects with a fresh one after a broken connection."""
    from azure.servicebus import ServiceBusClient

    if _setting(connection):
        return ServiceBusClient.from_connection_string(_setting(connection))
    namespace = _setting(f"{connection}__fullyQualifiedNamespace")
    if not namespace:
        raise HostConfigError(f"Service Bus connection {connection!r} is not set: give {connection} (connection "
                              f"string) or {connection}__fullyQualifiedNamespace (identity)")
    from azure.identity import DefaultAzureCredential

    return ServiceBusClient(namespace, credential=DefaultAzureCredential())

