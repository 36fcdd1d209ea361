"""Run an action at most once per key, under at-least-once delivery (in the spirit of Powertools' utility).

A record per (scope, key) in blob storage, created with an if-absent condition so only one delivery wins:
- absent            -> claim it (in_progress, with a lease), run, store the result as completed;
- completed         -> do not run again, return the stored result;
- in progress       -> another delivery is working on it: raise, so the message is retried later;
- lease expired     -> the worker died mid-way: take over with an ETag condition, run;
- redelivered       -> the broker only hands a message out again once the holder's lock is gone (it died, or
                       gave the message up), so a delivery counted higher than the claim's takes it over at once
                       instead of waiting out a lease that can outlive every delivery.
- expired            -> a completed record older than its TTL counts as absent (storage's lifecycle rule deletes
                       it a little later: infra/storage.tf); the TTL outlives every redelivery of one message;
- other payload      -> the same key with a different payload hash is not a redelivery: PayloadMismatch (as AWS
                       Powertools' payload validation), never run and never skipped silently.
If the action raises, the claim is released so a retry can run it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from shared.blob_layout import SYSTEM, idempotency_name
from shared.ports import BlobNotFound, BlobStore, Clock, PreconditionFailed

# Keep in step with the lifecycle rule on system/idempotency/ in infra/storage.tf (a test checks they agree).
IDEMPOTENCY_TTL = timedelta(days=7)


class AlreadyInProgress(RuntimeError):
    """Another delivery of the same event holds the claim; retry after its lease."""


class PayloadMismatch(ValueError):
    """A key already claimed for another payload: a different message reusing an id, which must not be skipped."""


class DuplicateInProgress(AlreadyInProgress):
    """Another broker message with the same id holds a live claim: this copy adds nothing and can be settled. If the
    holder fails, its own message is redelivered; if it dies, that message's redelivery takes the claim over."""


class IdempotencyRecord(BaseModel):
    status: Literal["in_progress", "completed"]
    lease_expires_at: datetime
    delivery_count: int | None = None  # of the delivery that claimed it
    sequence_number: int | None = None  # the broker's number of the message that claimed it: kept on redelivery
    payload_hash: str | None = None  # of what was claimed; None: not checked
    expires_at: datetime | None = None  # a completed record counts as absent from then on
    result: Any = None


@dataclass(frozen=True)
class Outcome:
    result: Any
    replayed: bool  # True when the action had already run and its stored result is returned


class IdempotencyStore:
    def __init__(self, blobs: BlobStore, clock: Clock, lease: timedelta = timedelta(minutes=10),
                 ttl: timedelta = IDEMPOTENCY_TTL) -> None:
        self._blobs = blobs
        self._clock = clock
        self._lease = lease
        self._ttl = ttl

    def run_once(self, scope: str, key: str, action: Callable[[], Any], *, delivery_count: int | None = None,
                 payload_hash: str | None = None, sequence_number: int | None = None) -> Outcome:
        """`action` must return something JSON-serialisable; that is what a replay returns. `payload_hash` (of what
        the key stands for) turns a key reused for another payload into PayloadMismatch. `delivery_count` and
        `sequence_number` (of a broker message) tell a redelivery of the message holding the claim, which takes it
        over, from another message with the same id (DuplicateInProgress)."""
        name = idempotency_name(scope, key)
        claim_etag = self._claim(name, scope, key, delivery_count, payload_hash, sequence_number)
        if isinstance(claim_etag, Outcome):
            return claim_etag
        try:
            result = action()
        except BaseException:
            self._blobs.delete(SYSTEM, name, if_match=claim_etag)
            raise
        now = self._clock.now()
        record = IdempotencyRecord(status="completed", lease_expires_at=now, payload_hash=payload_hash,
                                   expires_at=now + self._ttl, result=result)
        self._blobs.write(SYSTEM, name, record.model_dump_json().encode(), if_match=claim_etag)
        return Outcome(result=result, replayed=False)

    def _claim(self, name: str, scope: str, key: str, delivery_count: int | None,
               payload_hash: str | None = None, sequence_number: int | None = None) -> str | Outcome:
        now = self._clock.now()
        in_progress = IdempotencyRecord(status="in_progress", lease_expires_at=now + self._lease,
                                        delivery_count=delivery_count, payload_hash=payload_hash,
                                        sequence_number=sequence_number)
        body = in_progress.model_dump_json().encode()
        try:
            return self._blobs.write(SYSTEM, name, body, if_absent=True)
        except PreconditionFailed:
            pass
        try:
            data, etag = self._blobs.read(SYSTEM, name)
        except BlobNotFound:  # released between our write and read: try once more from scratch
            return self._blobs.write(SYSTEM, name, body, if_absent=True)
        existing = IdempotencyRecord.model_validate(json.loads(data))
        expired = existing.expires_at is not None and existing.expires_at <= now
        if not expired and existing.payload_hash and payload_hash and existing.payload_hash != payload_hash:
            raise PayloadMismatch(f"{scope}/{key} was {existing.status.replace('_', ' ')} for payload "
                                  f"{existing.payload_hash}; this delivery carries {payload_hash}")
        if existing.status == "completed" and not expired:
            return Outcome(result=existing.result, replayed=True)
        # Only a later delivery of the very message that claimed (its lock lost: the holder died) takes over. Another
        # message with the same id — published twice, e.g. by two work items finishing at once — has delivery counts
        # of its own: taking over on those would run the handler twice at once, each undoing the other's claim.
        same_message = sequence_number is None or existing.sequence_number is None or (
            sequence_number == existing.sequence_number)
        redelivered = (same_message and delivery_count is not None and existing.delivery_count is not None
                       and delivery_count > existing.delivery_count)
        if existing.status == "in_progress" and existing.lease_expires_at > now and not redelivered:
            if not same_message:
                raise DuplicateInProgress(f"{scope}/{key} is being handled by message {existing.sequence_number}; "
                                          f"message {sequence_number} carries the same id")
            raise AlreadyInProgress(f"{scope}/{key} is being handled by another delivery")
        try:
            return self._blobs.write(SYSTEM, name, body, if_match=etag)
        except PreconditionFailed:
            raise AlreadyInProgress(f"{scope}/{key} was taken over by another delivery") from None
