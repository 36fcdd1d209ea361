"""Approvals over real HTTP on the local stack: App Service authentication as the local host emulates it
(client-supplied identity headers stripped, sessions injected) and no function key anywhere — the notification's
link opens the page after sign-in, a key holder without a signed-in identity gets 401, and a host with the
emulation off (App Service authentication off) refuses every approval route. Every error status, a decision
landing once under concurrent clicks, the granted event in the audit journal, and expiry by the timer."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.servicebus import ServiceBusClient
from azure.storage.blob import BlobServiceClient

from localstack.host.app_service_auth import local_session_token
from localstack.host.keys import read_host_keys
from localstack.stack import LocalStack, free_port
from shared.adapters.azure_blob import AzureBlobStore
from shared.adapters.servicebus import ServiceBusPublisher
from shared.approvals import ApprovalSubject
from shared.audit import EventJournal, JournalingPublisher
from shared.blob_layout import APPROVALS, AUDIT, safe_segment
from shared.events import ApprovalRequested, FlowRegistered
from shared.notifications import LogNotifier
from shared.services.approvals import ApprovalSettings, request_approval
from shared.settings import Settings
from tests.e2e.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
APPROVERS = ["alice@contoso.com", "Bob@Contoso.com"]  # as in the stack's APPROVERS setting
SUBJECT = ApprovalSubject(use_case="math_coding", flow_name="math_coding", flow_version="4",
                          metrics={"accuracy": 0.9, "error_rate": 0.02},
                          gate_summary=["accuracy >= 0.8 passed: actual 0.9"],
                          report_uri="reports/math_coding/exp-e2e/summary.html")


class ShiftedClock:
    """Real time, shifted: creating a request "almost an hour ago" makes it expire within seconds."""

    def __init__(self, offset: timedelta) -> None:
        self._offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


@pytest.fixture(scope="module")
def key(stack: LocalStack) -> str:
    return read_host_keys(stack.storage_connection_string)["default"]


@pytest.fixture(scope="module")
def publisher(stack: LocalStack, storage: BlobServiceClient) -> Iterator[JournalingPublisher]:
    bus = ServiceBusPublisher(ServiceBusClient.from_connection_string(stack.servicebus_connection_string),
                              "genaiops-events")
    yield JournalingPublisher(bus, EventJournal(AzureBlobStore(storage)))
    bus.close()


def create_approval(stack: LocalStack, storage: BlobServiceClient, publisher: JournalingPublisher,
                    expires_in: timedelta = timedelta(minutes=60)) -> ApprovalRequested:
    cause = FlowRegistered.create({"use_case": "math_coding", "experiment_id": "exp-e2e", "name": "math_coding",
                                   "version": "4", "content_hash": "sha256:" + "2" * 64, "variant": {},
                                   "metrics": SUBJECT.metrics, "created": True},
                                  correlation_id=f"approval-e2e-{uuid.uuid4().hex[:10]}")
    timeout = timedelta(minutes=60)
    event = request_approval(cause, SUBJECT, blobs=AzureBlobStore(storage), clock=ShiftedClock(expires_in - timeout),
                             settings=Settings(public_base_url=stack.base_url),
                             config=ApprovalSettings(approvers=APPROVERS, timeout_minutes=60,
                                                     app_service_auth_enabled=True), notifier=LogNotifier())
    publisher.publish([event])
    return event


def signed_in(stack: LocalStack, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {local_session_token(stack.storage_connection_string, user)}"}


def url(stack: LocalStack, event: ApprovalRequested, action: str = "") -> str:
    return f"{stack.base_url}/api/approvals/{event.payload.approval_id}" + (f"/{action}" if action else "")


def stored(storage: BlobServiceClient, approval_id: str) -> dict:
    return json.loads(storage.get_blob_client(APPROVALS, f"{approval_id}.json").download_blob().readall())


def journaled_types(storage: BlobServiceClient, correlation_id: str) -> list[str]:
    blobs = storage.get_container_client(AUDIT).list_blobs(name_starts_with=f"{safe_segment(correlation_id)}/")
    return [json.loads(storage.get_blob_client(AUDIT, blob.name).download_blob().readall())["type"]
            for blob in sorted(blobs, key=lambda b: b.name)]


def test_the_notification_link_opens_the_page_after_sign_in_without_any_key(
        stack: LocalStack, storage: BlobServiceClient, publisher: JournalingPublisher, key: str) -> None:
    event = create_approval(stack, storage, publisher)
    assert event.payload.approval_url == url(stack, event)  # what the notification links to: no key in it
    browser = requests.Session()
    browser.headers["Accept"] = "text/html,application/xhtml+xml,*/*;q=0.8"

    to_sign_in = browser.get(event.payload.approval_url, allow_redirects=False, timeout=10)
    assert to_sign_in.status_code == 302
    assert to_sign_in.headers["Location"].startswith("/.auth/login/local?post_login_redirect_uri=")
    form = browser.get(stack.base_url + to_sign_in.headers["Location"], timeout=10)
    assert form.status_code == 200
    assert 'name="user"' in form.text
    back = parse_qs(urlsplit(to_sign_in.headers["Location"]).query)["post_login_redirect_uri"][0]
    assert back == f"/api/approvals/{event.payload.approval_id}?format=html"

    page = browser.get(f"{stack.base_url}/.auth/login/local",  # the form's submit, followed to the page
                       params={"user": "alice@contoso.com", "post_login_redirect_uri": back}, timeout=10)
    assert page.status_code == 200, page.text
    assert page.url == stack.base_url + back
    assert page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "Signed in as <b>alice@contoso.com</b>" in page.text
    assert 'id="approve"' in page.text
    assert "accuracy &gt;= 0.8 passed" in page.text
    assert key not in page.text
    assert "code=" not in page.text

    # The page's own buttons: a same-origin post with the session cookie, no key.
    granted = browser.post(url(stack, event, "approve"), json={"comment": "from the page"},
                           headers={"Accept": "application/json", "Origin": stack.base_url}, timeout=10)
    assert granted.status_code == 200, granted.text
    assert granted.json()["approval"]["decided_by"] == "alice@contoso.com"


def test_the_request_is_served_as_json_or_as_the_page(stack: LocalStack, storage: BlobServiceClient,
                                                      publisher: JournalingPublisher, http: requests.Session,
                                                      key: str) -> None:
    event = create_approval(stack, storage, publisher)
    for credentials in ({}, {"x-functions-key": key}):  # a function key is nobody: 401 without a signed-in person
        refused = http.get(url(stack, event), headers=credentials, timeout=10)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthenticated"
        assert refused.json()["sign_in"].startswith("/.auth/login/local?")
    assert http.get(url(stack, event), params={"code": key}, timeout=10).status_code == 401

    bob = signed_in(stack, "bob@contoso.com")
    as_json = http.get(url(stack, event), headers=bob, timeout=10)
    assert as_json.status_code == 200
    assert as_json.headers["Content-Type"].startswith("application/json")
    body = as_json.json()
    assert (body["status"], body["open"], body["approvers"]) == ("pending", True, APPROVERS)
    assert body["metrics"] == SUBJECT.metrics

    browser = http.get(url(stack, event), headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", **bob},
                       timeout=10)
    assert browser.status_code == 200
    assert browser.headers["Content-Type"].startswith("text/html")
    assert 'id="approve"' in browser.text
    assert "math_coding" in http.get(url(stack, event), params={"format": "html"}, headers=bob, timeout=10).text

    for missing in ("0" * 32, "not..valid"):
        gone = http.get(f"{stack.base_url}/api/approvals/{missing}", headers=bob, timeout=10)
        assert gone.status_code == 404
        assert gone.json()["error"] == "not_found"


def test_deciding_needs_a_signed_in_approver(stack: LocalStack, storage: BlobServiceClient,
                                            publisher: JournalingPublisher, http: requests.Session,
                                            key: str) -> None:
    event = create_approval(stack, storage, publisher)
    approve = url(stack, event, "approve")
    with_key = {"x-functions-key": key}

    nobody = http.post(approve, headers=with_key, json={"comment": "hi"}, timeout=10)
    assert nobody.status_code == 401
    assert "not signed in" in nobody.json()["message"]

    # Headers a client makes up are what Easy Auth strips: the app must never see them.
    principal = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": [
        {"typ": "preferred_username", "val": "alice@contoso.com"}]}).encode()).decode()
    forged = {**with_key, "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com", "X-MS-CLIENT-PRINCIPAL": principal}
    assert http.post(approve, headers=forged, json={}, timeout=10).status_code == 401

    token = signed_in(stack, "alice@contoso.com")["Authorization"]
    tampered = {**with_key, "Authorization": token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")}
    assert http.post(approve, headers=tampered, json={}, timeout=10).status_code == 401
    cookie_tampered = {**with_key, "Cookie": f"AppServiceAuthSession={token.split()[1]}x"}
    assert http.post(approve, headers=cookie_tampered, json={}, timeout=10).status_code == 401

    mallory = http.post(approve, headers={**with_key, **signed_in(stack, "mallory@contoso.com")}, json={},
                        timeout=10)
    assert mallory.status_code == 403
    assert mallory.json()["error"] == "forbidden"

    cross_site = http.post(approve, headers={**with_key, **signed_in(stack, "alice@contoso.com"),
                                             "Origin": "https://evil.example"}, json={}, timeout=10)
    assert cross_site.status_code == 403
    assert cross_site.json()["error"] == "cross_site"

    too_long = http.post(approve, headers={**with_key, **signed_in(stack, "alice@contoso.com")},
                         json={"comment": "x" * 2001}, timeout=10)
    assert too_long.status_code == 400

    unknown = http.post(f"{stack.base_url}/api/approvals/{'0' * 32}/approve",
                        headers={**with_key, **signed_in(stack, "alice@contoso.com")}, json={}, timeout=10)
    assert unknown.status_code == 404
    assert stored(storage, event.payload.approval_id)["status"] == "pending"  # nothing above decided anything


def test_approval_is_recorded_once_and_journaled(stack: LocalStack, storage: BlobServiceClient,
                                                 publisher: JournalingPublisher, http: requests.Session,
                                                 key: str) -> None:
    event = create_approval(stack, storage, publisher)
    with_key = {"x-functions-key": key}
    # Principal names compare case-insensitively (APPROVERS says alice@contoso.com).
    granted = http.post(url(stack, event, "approve"), headers={**with_key, **signed_in(stack, "ALICE@contoso.com")},
                        json={"comment": "accuracy 0.9 on the test set"}, timeout=10)
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert (body["approval"]["status"], body["approval"]["decided_by"]) == ("granted", "ALICE@contoso.com")
    assert body["event"]["type"] == "approval.granted"

    record = stored(storage, event.payload.approval_id)
    assert (record["status"], record["comment"]) == ("granted", "accuracy 0.9 on the test set")
    assert [entry["action"] for entry in record["history"]] == ["requested", "granted"]
    types = wait_for(lambda: (t := journaled_types(storage, event.correlation_id)) and "approval.granted" in t and t,
                     what="approval.granted in the audit journal")
    assert types.count("approval.granted") == 1
    assert "approval.requested" in types
    # The journal is what pipelines follow: the same run's events over HTTP.
    run = http.get(f"{stack.base_url}/api/runs/{event.correlation_id}/events", headers=with_key, timeout=10).json()
    granted_event = next(e for e in run if e["type"] == "approval.granted")
    assert granted_event["id"] == body["event"]["id"]
    assert granted_event["causation_id"] == event.id

    again = http.post(url(stack, event, "approve"), headers={**with_key, **signed_in(stack, "alice@contoso.com")},
                      json={}, timeout=10)
    assert again.status_code == 409
    assert again.json()["approval"]["status"] == "granted"
    form = http.post(url(stack, event, "reject"), headers={**with_key, **signed_in(stack, "bob@contoso.com")},
                     data={"comment": "too late"}, timeout=10)
    assert form.status_code == 409
    assert stored(storage, event.payload.approval_id)["decided_by"] == "ALICE@contoso.com"


def test_form_post_without_javascript_gets_the_page_back(stack: LocalStack, storage: BlobServiceClient,
                                                          publisher: JournalingPublisher, http: requests.Session,
                                                          key: str) -> None:
    event = create_approval(stack, storage, publisher)
    browser = {"Accept": "text/html,*/*;q=0.8", "Origin": stack.base_url, **signed_in(stack, "bob@contoso.com")}
    rejected = http.post(url(stack, event, "reject"), data={"comment": "error rate & latency"},
                         headers=browser, timeout=10)
    assert rejected.status_code == 200, rejected.text
    assert rejected.headers["Content-Type"].startswith("text/html")
    assert 'data-status="rejected"' in rejected.text
    assert "error rate &amp; latency" in rejected.text
    record = stored(storage, event.payload.approval_id)
    assert (record["status"], record["comment"]) == ("rejected", "error rate & latency")

    again = http.post(url(stack, event, "approve"), data={}, headers=browser, timeout=10)
    assert again.status_code == 409
    assert "already rejected by bob@contoso.com" in again.text  # the page, with the reason


def test_concurrent_approve_and_reject_exactly_one_wins(stack: LocalStack, storage: BlobServiceClient,
                                                        publisher: JournalingPublisher, key: str) -> None:
    event = create_approval(stack, storage, publisher)
    clicks = [("approve", "alice@contoso.com"), ("reject", "bob@contoso.com")] * 2
    headers = [{"x-functions-key": key, **signed_in(stack, user)} for _, user in clicks]
    start, answers = threading.Barrier(len(clicks)), [0] * len(clicks)

    def click(index: int) -> None:
        start.wait()
        answers[index] = requests.post(url(stack, event, clicks[index][0]), headers=headers[index],
                                       json={"comment": f"click {index}"}, timeout=20).status_code

    threads = [threading.Thread(target=click, args=(i,)) for i in range(len(clicks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(answers) == [200, 409, 409, 409], answers
    winner = answers.index(200)
    record = stored(storage, event.payload.approval_id)
    assert record["status"] == ("granted" if clicks[winner][0] == "approve" else "rejected")
    assert record["comment"] == f"click {winner}"
    types = wait_for(lambda: (t := journaled_types(storage, event.correlation_id)) and f"approval.{record['status']}"
                     in t and t, what="the decision in the journal")
    assert len([t for t in types if t in ("approval.granted", "approval.rejected")]) == 1


def test_the_timer_expires_a_forgotten_request(stack: LocalStack, storage: BlobServiceClient,
                                               publisher: JournalingPublisher, http: requests.Session,
                                               key: str) -> None:
    event = create_approval(stack, storage, publisher, expires_in=timedelta(seconds=2))
    with_key = {"x-functions-key": key}
    # The sweep records the expiry, publishes approval.expired, then notes it went out: wait for all of it.
    record = wait_for(lambda: (r := stored(storage, event.payload.approval_id))["status"] == "expired"
                      and r["event_published"] and r, timeout=30, what="the expiry timer to expire the request")
    assert record["decided_by"] == "system"
    wait_for(lambda: "approval.expired" in journaled_types(storage, event.correlation_id),
             what="approval.expired in the journal")
    late = http.post(url(stack, event, "approve"), headers={**with_key, **signed_in(stack, "alice@contoso.com")},
                     json={}, timeout=10)
    assert late.status_code == 410
    assert late.json()["approval"]["status"] == "expired"
    assert http.get(url(stack, event), headers=signed_in(stack, "bob@contoso.com"), timeout=10).json()["open"] is False


def test_with_app_service_authentication_off_every_approval_route_refuses(
        stack: LocalStack, storage: BlobServiceClient, publisher: JournalingPublisher, http: requests.Session,
        key: str) -> None:
    """A host with WEBSITE_AUTH_ENABLED=false is Azure with authentication off (the pr environment): nothing
    strips client headers, so a key holder could send any principal. The app must not believe them."""
    event = create_approval(stack, storage, publisher)
    port, name = free_port(), "host-noauth"
    stack.extra_settings["WEBSITE_AUTH_ENABLED"] = "false"
    try:
        stack.start_host(name, port)
    finally:
        del stack.extra_settings["WEBSITE_AUTH_ENABLED"]
    try:
        base = f"http://127.0.0.1:{port}/api/approvals/{event.payload.approval_id}"
        principal = base64.b64encode(json.dumps({"auth_typ": "aad", "claims": [
            {"typ": "preferred_username", "val": "alice@contoso.com"}]}).encode()).decode()
        posing = {"x-functions-key": key, "X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com",
                  "X-MS-CLIENT-PRINCIPAL": principal}
        for method, target in (("POST", f"{base}/approve"), ("POST", f"{base}/reject"), ("GET", base)):
            for headers in (posing, {**posing, **signed_in(stack, "alice@contoso.com")}):
                answer = http.request(method, target, headers=headers, json={}, timeout=10)
                assert answer.status_code == 503, (method, target, answer.text)
                assert answer.json()["error"] == "identity_source_missing"
                assert "enable App Service authentication" in answer.json()["message"]
        page = http.get(base, headers={"Accept": "text/html", **posing}, timeout=10)
        assert page.status_code == 503
        assert http.get(f"http://127.0.0.1:{port}/.auth/login/local?user=alice@contoso.com",
                        allow_redirects=False, timeout=10).status_code == 404  # no emulated sign-in either
        assert stored(storage, event.payload.approval_id)["status"] == "pending"
        assert "approval route refused" in stack.log_file(name).read_text()
    finally:
        stack.stop(name)
