"""BlobStore on azure-storage-blob: Azure Storage in production, Azurite on the local stack."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.ports import BlobInfo, BlobNotFound, PreconditionFailed
from shared.redaction import redact_bytes
from shared.settings import Settings


def blob_service_client(settings: Settings) -> BlobServiceClient:
    settings.require_storage()
    if settings.storage_connection_string:
        return BlobServiceClient.from_connection_string(settings.storage_connection_string.get_secret_value())
    from shared.adapters.credentials import azure_credential

    return BlobServiceClient(account_url=str(settings.storage_blob_uri), credential=azure_credential())


class AzureBlobStore:
    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service
        self._known_containers: set[str] = set()

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        try:
            downloader = self._service.get_blob_client(container, name).download_blob()
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        return downloader.readall(), str(downloader.properties.etag)

    def stream(self, container: str, name: str, chunk_size: int = 4 * 1024 * 1024, *,
               etag: str | None = None) -> Iterator[bytes]:
        blob = self._service.get_blob_client(container, name)
        pinned: dict[str, Any] = {}
        if etag:
            pinned = {"etag": '"' + etag.strip('"') + '"', "match_condition": MatchConditions.IfNotModified}
        try:
            size = int(blob.get_blob_properties(**pinned).size)
            # Ranged reads: each chunk is its own request, so memory stays at one chunk.
            for offset in range(0, size, chunk_size):
                yield blob.download_blob(offset=offset, length=min(chunk_size, size - offset), **pinned).readall()
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        except ResourceModifiedError:
            if not blob.exists():  # storage answers a condition on a missing blob with 412, not 404
                raise BlobNotFound(f"{container}/{name}") from None
            raise PreconditionFailed(f"{container}/{name} is no longer version {etag}") from None

    def write(self, container: str, name: str, data: bytes, *, content_type: str = "application/json",
              if_match: str | None = None, if_absent: bool = False) -> str:
        self._ensure_container(container)
        conditions: dict[str, Any] = {}
        if if_absent:
            conditions = {"match_condition": MatchConditions.IfMissing}
        elif if_match:
            conditions = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        data = redact_bytes(data)  # the last net: no known secret value is ever stored, whoever wrote the bytes
        try:
            result = self._service.get_blob_client(container, name).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type), **conditions
            )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise PreconditionFailed(f"{container}/{name}: {exc.reason or 'condition not met'}") from None
        return str(result["etag"])

    def delete(self, container: str, name: str, *, if_match: str | None = None) -> None:
        conditions: dict[str, Any] = (
            {"etag": if_match, "match_condition": MatchConditions.IfNotModified} if if_match else {}
        )
        try:
            self._service.get_blob_client(container, name).delete_blob(**conditions)
        except ResourceNotFoundError:
            return
        except ResourceModifiedError:
            raise PreconditionFailed(f"{container}/{name} changed before delete") from None

    def info(self, container: str, name: str) -> BlobInfo:
        try:
            props = self._service.get_blob_client(container, name).get_blob_properties()
        except ResourceNotFoundError:
            raise BlobNotFound(f"{container}/{name}") from None
        return BlobInfo(container, name, int(props.size), str(props.etag), props.last_modified)

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        try:
            return [
                BlobInfo(container, item.name, int(item.size), str(item.etag), item.last_modified)
                for item in self._service.get_container_client(container).list_blobs(name_starts_with=prefix)
            ]
        except ResourceNotFoundError:
            return []

    def _ensure_container(self, container: str) -> None:
        if container in self._known_containers:
            return
        with contextlib.suppress(ResourceExistsError):
            self._service.create_container(container)
        self._known_containers.add(container)
