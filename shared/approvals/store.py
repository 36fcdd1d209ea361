"""Approval requests in blob storage, container `approvals`:

    {approval_id}.json     the request: state, decision, history (the audit record)
    open/{approval_id}     marker while the request needs the sweep: pending, or decided with its event unsent

Every state change is a conditional write on the ETag that was read, so of two approvers clicking at the same
moment exactly one write lands; the other sees PreconditionFailed, re-reads, and finds the request decided.
The markers keep the expiry sweep's work proportional to the open requests, not to every request ever made.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.approvals.models import APPROVAL_ID_PATTERN, ApprovalNotFound, ApprovalRequest
from shared.blob_layout import APPROVALS, safe_segment
from shared.ports import BlobNotFound, BlobStore, PreconditionFailed

OPEN_PREFIX = "open/"
_VALID_ID = re.compile(APPROVAL_ID_PATTERN)


def check_approval_id(approval_id: str) -> None:
    """An id this app could have made, else ApprovalNotFound (404): nothing is looked up or built from it."""
    if not _VALID_ID.fullmatch(approval_id):
        raise ApprovalNotFound(f"no approval {approval_id[:300]!r}")


def request_name(approval_id: str) -> str:
    return f"{safe_segment(approval_id)}.json"


def open_marker_name(approval_id: str) -> str:
    return f"{OPEN_PREFIX}{safe_segment(approval_id)}"


@dataclass(frozen=True)
class Stored:
    request: ApprovalRequest
    etag: str


@dataclass(frozen=True)
class OpenMarker:
    approval_id: str
    written_at: datetime


class ApprovalStore:
    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def create(self, request: ApprovalRequest) -> tuple[Stored, bool]:
        """Write a new request unless one with its id exists; returns what is stored and whether it was created."""
        body = request.model_dump_json(indent=2).encode()
        try:
            etag = self._blobs.write(APPROVALS, request_name(request.approval_id), body, if_absent=True)
        except PreconditionFailed:
            return self.get(request.approval_id), False
        return Stored(request, etag), True

    def get(self, approval_id: str) -> Stored:
        check_approval_id(approval_id)
        try:
            data, etag = self._blobs.read(APPROVALS, request_name(approval_id))
        except BlobNotFound:
            raise ApprovalNotFound(f"no approval {approval_id!r}") from None
        return Stored(ApprovalRequest.model_validate(json.loads(data)), etag)

    def replace(self, request: ApprovalRequest, etag: str) -> Stored:
        """Conditional on `etag`: raises PreconditionFailed when someone else wrote in between."""
        body = request.model_dump_json(indent=2).encode()
        new_etag = self._blobs.write(APPROVALS, request_name(request.approval_id), body, if_match=etag)
        return Stored(request, new_etag)

    # --- open markers ----------------------------------------------------------------------------------------

    def mark_open(self, approval_id: str) -> None:
        self._blobs.write(APPROVALS, open_marker_name(approval_id), b"", content_type="text/plain")

    def close(self, approval_id: str) -> None:
        self._blobs.delete(APPROVALS, open_marker_name(approval_id))

    def open_markers(self) -> list[OpenMarker]:
        return [OpenMarker(info.name.removeprefix(OPEN_PREFIX), info.last_modified)
                for info in self._blobs.list(APPROVALS, prefix=OPEN_PREFIX)]


def is_stale(marker: OpenMarker, now: datetime, grace: timedelta) -> bool:
    """A marker without a request is only abandoned once its creator has surely given up."""
    return now - marker.written_at > grace
