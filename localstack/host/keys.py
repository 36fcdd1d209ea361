"""Function keys, kept where the real host keeps them: azure-webjobs-secrets/{hostId}/host.json in storage.

Generated on first start and then stable across restarts, so a pipeline or a person can read them once.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

SECRETS_CONTAINER = "azure-webjobs-secrets"


@dataclass(frozen=True)
class HostKeys:
    master: str
    function_keys: dict[str, str]  # name -> value; "default" is what clients use

    def allows(self, key: str | None, admin_only: bool) -> bool:
        if not key:
            return False
        if secrets.compare_digest(key, self.master):
            return True
        return not admin_only and any(secrets.compare_digest(key, value) for value in self.function_keys.values())


def load_or_create_host_keys(service: BlobServiceClient, host_id: str) -> HostKeys:
    blob = service.get_blob_client(SECRETS_CONTAINER, f"{host_id}/host.json")
    try:
        document = json.loads(blob.download_blob().readall())
    except ResourceNotFoundError:
        document = {
            "masterKey": {"name": "master", "value": secrets.token_urlsafe(32)},
            "functionKeys": [{"name": "default", "value": secrets.token_urlsafe(32)}],
        }
        with contextlib.suppress(ResourceExistsError):
            service.create_container(SECRETS_CONTAINER)
        try:
            blob.upload_blob(json.dumps(document).encode(), overwrite=False)
        except ResourceExistsError:  # another host instance won the race: use its keys
            document = json.loads(blob.download_blob().readall())
    return HostKeys(
        master=document["masterKey"]["value"],
        function_keys={key["name"]: key["value"] for key in document.get("functionKeys", [])},
    )


def read_host_keys(storage_connection_string: str, host_id: str = "genaiops-local") -> dict[str, str]:
    """The keys a client needs (`python -m localstack keys`); the host creates them on first start."""
    keys = load_or_create_host_keys(BlobServiceClient.from_connection_string(storage_connection_string), host_id)
    return {"master": keys.master, **keys.function_keys}
