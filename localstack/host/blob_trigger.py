"""Blob triggers on Azurite: poll the container named by the binding path, fire once per blob version.

Like the real host, a receipt per (function, blob, ETag) is kept in the `azure-webjobs-hosts` container, so
each version fires once and restarts do not re-fire; a blob whose function keeps failing is retried up to
`maxDequeueCount` times (host.json, default 5) and then marked poisoned with the last error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import azure.functions as func
from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.functions.blob import BlobConverter
from azure.functions.meta import Datum
from azure.storage.blob import BlobProperties, BlobServiceClient

from localstack.host.invoke import invoke
from localstack.host.loader import FunctionSpec, HostConfigError

log = logging.getLogger("localhost.blob")
HOSTS_CONTAINER = "azure-webjobs-hosts"
MAX_BLOB_NAME = 1024  # Azure Storage's limit on a blob name


@dataclass(frozen=True)
class BlobPath:
    container: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, path: str) -> BlobPath:
        container, _, rest = path.partition("/")
        if not container or "{" in container:
            raise HostConfigError(f"blob trigger path {path!r} must start with a literal container name")
        regex = ""
        for literal, name in re.findall(r"([^{]*)(?:\{([^}]*)\})?", rest):
            regex += re.escape(literal)
            if name:
                regex += f"(?P<{name}>.+?)"
        return cls(container, re.compile(f"^{regex}$", re.DOTALL))  # blob names may hold a newline

    def match(self, blob_name: str) -> dict[str, str] | None:
        found = self.pattern.match(blob_name)
        return found.groupdict() if found else None


class BlobTriggerListener:
    def __init__(self, spec: FunctionSpec, service: BlobServiceClient, host_id: str,
                 poll_seconds: float = 1.0, max_attempts: int = 5) -> None:
        self._spec = spec
        self._service = service
        self._path = BlobPath.parse(spec.trigger["path"])
        self._host_id = host_id
        self._poll_seconds = poll_seconds
        self._max_attempts = max_attempts
        self._done: set[tuple[str, str]] = set()  # (blob name, etag) known to have a receipt
        self._attempts: dict[tuple[str, str], int] = {}
        self._receipts = service.get_container_client(HOSTS_CONTAINER)

    def run(self, stop: threading.Event) -> None:
        with contextlib.suppress(ResourceExistsError):
            self._receipts.create_container()
        log.info("blob trigger %s watching %s/%s", self._spec.name, self._path.container, self._path.pattern.pattern)
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("blob trigger %s: poll failed; retrying", self._spec.name)
            stop.wait(self._poll_seconds)

    def poll_once(self) -> int:
        fired = 0
        container = self._service.get_container_client(self._path.container)
        try:
            blobs = list(container.list_blobs(include=["metadata"]))
        except ResourceNotFoundError:
            return 0
        for blob in sorted(blobs, key=lambda b: b.last_modified):
            key = (blob.name, str(blob.etag))
            if key in self._done or self._path.match(blob.name) is None:
                continue
            if self._has_receipt(blob):
                self._done.add(key)
                continue
            fired += self._fire(blob)
        return fired

    def _receipt_name(self, blob: BlobProperties) -> str:
        etag = str(blob.etag).strip('"')
        function = f"Host.Functions.{self._spec.name}"
        name = f"blobreceipts/{self._host_id}/{function}/{etag}/{self._path.container}/{blob.name}"
        if len(name) <= MAX_BLOB_NAME:
            return name
        # A long blob name would make its receipt's name longer than storage allows, and the receipt write fail
        # on every poll; '#' cannot be in a container name, so this never meets another blob's receipt.
        digest = hashlib.sha256(blob.name.encode("utf-8", "surrogatepass")).hexdigest()
        return f"blobreceipts/{self._host_id}/{function}/{etag}/{self._path.container}#sha256/{digest}"

    def _has_receipt(self, blob: BlobProperties) -> bool:
        return self._receipts.get_blob_client(self._receipt_name(blob)).exists()

    def _fire(self, blob: BlobProperties) -> int:
        key = (blob.name, str(blob.etag))
        try:
            content = self._service.get_blob_client(self._path.container, blob.name).download_blob(
                etag=blob.etag, match_condition=MatchConditions.IfNotModified).readall()
        except (ResourceNotFoundError, ResourceModifiedError):
            return 0  # deleted or replaced since listing: the next poll sees the current version
        try:
            invoke(self._spec, self._input_stream(blob, content), reason=f"New blob detected: {blob.name}")
        except Exception as exc:  # noqa: BLE001 - any function failure counts as a failed attempt
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            if attempts < self._max_attempts:
                return 0
            self._write_receipt(blob, {"status": "poisoned", "attempts": attempts, "error": repr(exc)[:2000]})
            log.error("blob %s/%s poisoned after %d attempts", self._path.container, blob.name, attempts)
        else:
            self._write_receipt(blob, {"status": "succeeded"})
        self._done.add(key)
        self._attempts.pop(key, None)
        return 1

    def _write_receipt(self, blob: BlobProperties, record: dict[str, object]) -> None:
        record["at"] = datetime.now(UTC).isoformat()
        self._receipts.upload_blob(self._receipt_name(blob), json.dumps(record).encode(), overwrite=True)

    def _input_stream(self, blob: BlobProperties, content: bytes) -> func.InputStream:
        account_url = self._service.url.rstrip("/")
        properties = {
            "ContentLength": blob.size, "Length": blob.size, "ETag": str(blob.etag),
            "LastModified": blob.last_modified.isoformat() if blob.last_modified else None,
            "ContentType": blob.content_settings.content_type if blob.content_settings else None,
        }
        metadata = {
            "BlobTrigger": Datum(f"{self._path.container}/{blob.name}", "string"),
            "Uri": Datum(f"{account_url}/{self._path.container}/{blob.name}", "string"),
            "Properties": Datum(json.dumps(properties), "json"),
            "Metadata": Datum(json.dumps(dict(blob.metadata or {})), "json"),
        }
        return BlobConverter.decode(Datum(content, "bytes"), trigger_metadata=metadata)

