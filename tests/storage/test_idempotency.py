from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.blob_layout import idempotency_name
from shared.idempotency import AlreadyInProgress, DuplicateInProgress, IdempotencyStore, PayloadMismatch
from shared.ports import BlobStore
from tests.fakes.memory import ManualClock

pytestmark = pytest.mark.azurite


def test_second_run_replays_the_stored_result(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    store = IdempotencyStore(blob_store, clock)
    calls: list[int] = []
    first = store.run_once("scope", unique, lambda: calls.append(1) or {"n": len(calls)})
    second = store.run_once("scope", unique, lambda: calls.append(1) or {"n": len(calls)})
    assert calls == [1]
    assert (first.replayed, second.replayed) == (False, True)
    assert second.result == {"n": 1}


def test_failed_action_releases_the_claim(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    store = IdempotencyStore(blob_store, clock)

    def explode() -> None:
        raise RuntimeError("transient")

    with pytest.raises(RuntimeError):
        store.run_once("scope", unique, explode)
    assert store.run_once("scope", unique, lambda: "ok").result == "ok"


def test_in_progress_claim_blocks_until_its_lease_expires(blob_store: BlobStore, clock: ManualClock,
                                                          unique: str) -> None:
    store = IdempotencyStore(blob_store, clock, lease=timedelta(minutes=5))
    observed: list[str] = []

    def concurrent_delivery() -> str:
        # While the first delivery holds the claim, a second one must not run.
        with pytest.raises(AlreadyInProgress):
            store.run_once("scope", unique, lambda: observed.append("duplicate ran"))
        return "first"

    assert store.run_once("scope", unique, concurrent_delivery).result == "first"
    assert observed == []


def test_expired_lease_is_taken_over(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    store = IdempotencyStore(blob_store, clock, lease=timedelta(minutes=5))
    crashed = IdempotencyStore(blob_store, clock, lease=timedelta(minutes=5))
    # Simulate a worker that claimed the key and died: claim without completing.
    crashed._claim(idempotency_name("scope", unique), "scope", unique, delivery_count=None)
    with pytest.raises(AlreadyInProgress):
        store.run_once("scope", unique, lambda: "too early")
    clock.advance(minutes=6)
    assert store.run_once("scope", unique, lambda: "took over").result == "took over"


def test_a_redelivery_takes_over_a_dead_claim_at_once(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    """The broker redelivers only once the holder's lock is gone: a higher delivery count need not wait the lease."""
    store = IdempotencyStore(blob_store, clock, lease=timedelta(minutes=10))
    store._claim(idempotency_name("scope", unique), "scope", unique, delivery_count=1)  # claimed, then SIGKILLed
    with pytest.raises(AlreadyInProgress):  # the same delivery (e.g. a duplicate send) still waits
        store.run_once("scope", unique, lambda: "duplicate", delivery_count=1)
    taken = store.run_once("scope", unique, lambda: "resumed", delivery_count=2)
    assert taken.result == "resumed"
    assert not taken.replayed


def test_a_completed_record_expires_after_its_ttl(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    store = IdempotencyStore(blob_store, clock, ttl=timedelta(days=7))
    assert store.run_once("scope", unique, lambda: "first").result == "first"
    clock.advance(days=6, hours=23)
    assert store.run_once("scope", unique, lambda: "too early").replayed
    clock.advance(hours=1)  # expired: treated as absent, so the action runs again and a fresh record is kept
    again = store.run_once("scope", unique, lambda: "after expiry")
    assert (again.result, again.replayed) == ("after expiry", False)
    record = json.loads(blob_store.read("system", idempotency_name("scope", unique))[0])
    assert record["status"] == "completed"
    assert record["expires_at"].startswith((clock.now() + timedelta(days=7)).date().isoformat())
    assert store.run_once("scope", unique, lambda: "third").result == "after expiry"


def test_the_same_key_with_another_payload_is_reported_not_skipped(blob_store: BlobStore, clock: ManualClock,
                                                                   unique: str) -> None:
    store = IdempotencyStore(blob_store, clock)
    store.run_once("scope", unique, lambda: "handled", payload_hash="sha256:aaa")
    assert store.run_once("scope", unique, lambda: "not run", payload_hash="sha256:aaa").replayed  # a redelivery
    with pytest.raises(PayloadMismatch, match="completed for payload sha256:aaa; this delivery carries sha256:bbb"):
        store.run_once("scope", unique, lambda: pytest.fail("must not run"), payload_hash="sha256:bbb")
    # A record written before payload hashes existed, or a caller that passes none, is not checked.
    assert store.run_once("scope", unique, lambda: "not run").replayed


def test_a_claim_in_progress_for_another_payload_is_reported_too(blob_store: BlobStore, clock: ManualClock,
                                                                 unique: str) -> None:
    store = IdempotencyStore(blob_store, clock)
    store._claim(idempotency_name("scope", unique), "scope", unique, delivery_count=1, payload_hash="sha256:aaa")
    with pytest.raises(PayloadMismatch, match="in progress for payload sha256:aaa"):
        store.run_once("scope", unique, lambda: "x", delivery_count=2, payload_hash="sha256:bbb")


def test_an_expired_record_no_longer_guards_its_payload(blob_store: BlobStore, clock: ManualClock,
                                                        unique: str) -> None:
    store = IdempotencyStore(blob_store, clock, ttl=timedelta(hours=1))
    store.run_once("scope", unique, lambda: "old", payload_hash="sha256:aaa")
    clock.advance(hours=2)
    assert store.run_once("scope", unique, lambda: "new", payload_hash="sha256:bbb").result == "new"


def test_another_message_with_the_same_id_never_takes_a_live_claim_over(blob_store: BlobStore, clock: ManualClock,
                                                                        unique: str) -> None:
    """Two messages carrying one event id (published twice at once): the second is a copy while the first is handled,
    on its first delivery or any later one; only the first message's own redelivery takes the claim over."""
    store = IdempotencyStore(blob_store, clock)
    store._claim(idempotency_name("scope", unique), "scope", unique, delivery_count=1, sequence_number=41)
    for count in (1, 2, 7):
        with pytest.raises(DuplicateInProgress, match="message 41"):
            store.run_once("scope", unique, lambda: "copy", delivery_count=count, sequence_number=42)

    with pytest.raises(AlreadyInProgress) as same:  # the holder's own message, not redelivered: not a copy
        store.run_once("scope", unique, lambda: "again", delivery_count=1, sequence_number=41)
    assert not isinstance(same.value, DuplicateInProgress)
    taken = store.run_once("scope", unique, lambda: "resumed", delivery_count=2, sequence_number=41)
    assert (taken.result, taken.replayed) == ("resumed", False)
    assert store.run_once("scope", unique, lambda: "late copy", delivery_count=1, sequence_number=42).replayed
