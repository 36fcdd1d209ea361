"""Approval state on real blob storage (Azurite): ETag-conditional transitions, one decision out of many
concurrent clicks, and the expiry sweep."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from shared.approvals import AlreadyDecided, ApprovalSubject, Principal, RequestExpired
from shared.approvals.models import ApprovalRequest
from shared.approvals.store import ApprovalStore, open_marker_name, request_name
from shared.blob_layout import APPROVALS
from shared.events import FlowRegistered
from shared.notifications import LogNotifier
from shared.ports import BlobStore, PreconditionFailed
from shared.services.approvals import ApprovalSettings, decide, expire_due, get_approval, request_approval
from shared.settings import Settings
from tests.fakes.memory import ManualClock, RecordingPublisher

pytestmark = pytest.mark.azurite

APPROVERS = ["alice@contoso.com", "bob@contoso.com"]
SUBJECT = ApprovalSubject(use_case="named_entity_recognition", flow_name="ner", flow_version="3",
                          metrics={"match_rate": 0.91}, gate_summary=["match_rate >= 0.8 passed"],
                          report_uri="reports/named_entity_recognition/exp/summary.html")


def ask(blob_store: BlobStore, clock: ManualClock, unique: str) -> str:
    cause = FlowRegistered.create({"use_case": SUBJECT.use_case, "experiment_id": unique, "name": "ner",
                                   "version": "3", "content_hash": "sha256:" + "1" * 64, "variant": {},
                                   "metrics": {}, "created": True}, correlation_id=f"run-{unique}")
    event = request_approval(cause, SUBJECT, blobs=blob_store, clock=clock, settings=Settings(),
                             config=ApprovalSettings(approvers=APPROVERS, timeout_minutes=30,
                                                     app_service_auth_enabled=True),
                             notifier=LogNotifier())
    return event.payload.approval_id


def test_stored_as_json_under_its_id_with_an_open_marker(blob_store: BlobStore, clock: ManualClock,
                                                         unique: str) -> None:
    approval_id = ask(blob_store, clock, unique)
    data, _ = blob_store.read(APPROVALS, f"{approval_id}.json")
    document = json.loads(data)
    assert document["approval_id"] == approval_id
    assert document["status"] == "pending"
    assert document["expires_at"] == (clock.now() + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    assert blob_store.info(APPROVALS, open_marker_name(approval_id)).size == 0


def test_create_is_if_absent_and_replace_is_if_match(blob_store: BlobStore, clock: ManualClock,
                                                     unique: str) -> None:
    store = ApprovalStore(blob_store)
    stored = store.get(ask(blob_store, clock, unique))
    again, created = store.create(stored.request.model_copy(update={"flow_version": "999"}))
    assert not created
    assert again.request.flow_version == "3"  # the first write stands

    granted = stored.request.decided("granted", "alice@contoso.com", "", clock.now())
    store.replace(granted, stored.etag)
    with pytest.raises(PreconditionFailed):  # written against a stale ETag
        store.replace(stored.request.decided("rejected", "bob@contoso.com", "", clock.now()), stored.etag)
    assert store.get(stored.request.approval_id).request.status == "granted"


def test_concurrent_approve_and_reject_record_exactly_one(blob_store: BlobStore, clock: ManualClock,
                                                          unique: str) -> None:
    approval_id = ask(blob_store, clock, unique)
    publisher, start = RecordingPublisher(), threading.Barrier(6)
    outcomes: dict[int, str] = {}

    def click(index: int) -> None:
        decision = "granted" if index % 2 == 0 else "rejected"
        start.wait()
        try:
            result = decide(approval_id, decision, Principal(APPROVERS[index % 2], "aad"), f"click {index}",
                            clock.now(), blobs=blob_store, publisher=publisher)
            outcomes[index] = result.request.status
        except AlreadyDecided:
            outcomes[index] = "409"

    threads = [threading.Thread(target=click, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = {i: status for i, status in outcomes.items() if status != "409"}
    assert len(outcomes) == 6
    assert len(winners) == 1, outcomes
    [(index, status)] = winners.items()
    stored = get_approval(approval_id, blob_store)
    assert (stored.status, stored.decided_by, stored.comment) == (status, APPROVERS[index % 2], f"click {index}")
    assert [event.type for event in publisher.events] == [f"approval.{status}"]
    assert [entry.action for entry in stored.history] == ["requested", status]
    assert stored.event_published


def test_sweep_expires_due_requests_once(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    due = ask(blob_store, clock, unique)
    clock.advance(minutes=20)
    later = ask(blob_store, clock, unique + "-later")
    publisher = RecordingPublisher()
    clock.advance(minutes=11)  # past the first one's 30 minutes, not the second's

    expired = [e for e in expire_due(clock.now(), blobs=blob_store, publisher=publisher)
               if e.payload.approval_id in (due, later)]
    assert [e.payload.approval_id for e in expired] == [due]
    assert not [e for e in expire_due(clock.now(), blobs=blob_store, publisher=publisher)
                if e.payload.approval_id in (due, later)]
    assert get_approval(due, blob_store).status == "expired"
    assert get_approval(later, blob_store).status == "pending"
    names = {info.name for info in blob_store.list(APPROVALS, prefix="open/")}
    assert open_marker_name(due) not in names
    assert open_marker_name(later) in names
    with pytest.raises(RequestExpired):
        decide(due, "granted", Principal("alice@contoso.com", "aad"), "", clock.now(), blobs=blob_store,
               publisher=publisher)


def test_a_decision_racing_the_sweep_is_either_recorded_or_expired(blob_store: BlobStore, clock: ManualClock,
                                                                    unique: str) -> None:
    # The approver read the request just before its expiry; the sweep expires it before the approver writes.
    approval_id = ask(blob_store, clock, unique)
    store = ApprovalStore(blob_store)
    before = store.get(approval_id)
    clock.advance(minutes=31)
    expire_due(clock.now(), blobs=blob_store, publisher=RecordingPublisher())
    late: ApprovalRequest = before.request.decided("granted", "alice@contoso.com", "", clock.now())
    with pytest.raises(PreconditionFailed):
        store.replace(late, before.etag)
    assert store.get(approval_id).request.status == "expired"
    assert blob_store.info(APPROVALS, request_name(approval_id)).size > 0
