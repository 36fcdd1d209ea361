"""Approvals without services: identity from Easy Auth headers, the service's decisions and expiry over a tiny
in-memory BlobStore (with real ETag semantics), the notification through a webhook on 127.0.0.1, the page,
and the local host's App Service authentication emulation."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import azure.functions as func
import pytest

from localstack.host.app_service_auth import (
    SESSION_COOKIE,
    LocalAppServiceAuth,
    SessionSigner,
    principal_headers,
)
from shared.approvals import (
    AlreadyDecided,
    ApprovalConfigError,
    ApprovalNotFound,
    ApprovalSubject,
    InvalidDecision,
    NotAnApprover,
    NotAuthenticated,
    Principal,
    RequestExpired,
    principal_from_headers,
)
from shared.approvals.identity import is_cross_site, request_origins
from shared.approvals.models import ApprovalRequest
from shared.approvals.page import render_approval_page, wants_html
from shared.approvals.store import ApprovalStore
from shared.blob_layout import APPROVALS
from shared.events import ApprovalExpired, ApprovalGranted, ApprovalRequested, Event, FlowRegistered
from shared.notifications import Notifier, WebhookNotifier
from shared.services.approvals import (
    ApprovalSettings,
    decide,
    decision_event,
    expire_due,
    get_approval,
    request_approval,
)
from shared.settings import Settings
from tests.fakes.memory import ManualClock, MemoryBlobStore, RecordingNotifier, RecordingPublisher
from tests.webhook import Webhook

APPROVERS = ["alice@contoso.com", "Bob@Contoso.com"]
ALICE = Principal("alice@contoso.com", "aad")


@pytest.fixture
def blobs() -> MemoryBlobStore:
    return MemoryBlobStore()


@pytest.fixture
def config() -> ApprovalSettings:
    return ApprovalSettings(approvers=APPROVERS, timeout_minutes=60, app_service_auth_enabled=True)


SETTINGS = Settings(public_base_url="https://func-genaiops.azurewebsites.net")
SUBJECT = ApprovalSubject(use_case="math_coding", flow_name="math_coding", flow_version="7",
                          metrics={"accuracy": 0.875, "error_rate": 0.05},
                          gate_summary=["accuracy >= 0.8 passed: actual 0.875"],
                          report_uri="reports/math_coding/exp-1/summary.html")


def registered(correlation_id: str = "run-1") -> FlowRegistered:
    return FlowRegistered.create({"use_case": "math_coding", "experiment_id": "exp-1", "name": "math_coding",
                                  "version": "7", "content_hash": "sha256:" + "0" * 64, "variant": {},
                                  "metrics": {"accuracy": 0.875}, "created": True}, correlation_id=correlation_id)


def ask(blobs: MemoryBlobStore, clock: ManualClock, config: ApprovalSettings, cause: Event | None = None,
        notifier: Notifier | None = None) -> ApprovalRequested:
    return request_approval(cause or registered(), SUBJECT, blobs=blobs, clock=clock, settings=SETTINGS,
                            config=config, notifier=notifier or RecordingNotifier())


# --- identity ------------------------------------------------------------------------------------------------

def encode_principal(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


# Entra ID's shape: name_typ is the e-mail claim, while the name header carries preferred_username.
ENTRA = {"auth_typ": "aad", "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
         "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role",
         "claims": [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "5b54"},
                    {"typ": "preferred_username", "val": "alice@contoso.com"}, {"typ": "groups", "val": "g1"}]}


def test_principal_from_easy_auth_headers() -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com", "X-MS-CLIENT-PRINCIPAL": encode_principal(ENTRA)}
    assert principal_from_headers(headers) == Principal("alice@contoso.com", "aad")


def test_the_local_hosts_injected_headers_are_accepted_by_the_app() -> None:
    assert principal_from_headers(principal_headers("carol@contoso.com")).name == "carol@contoso.com"


@pytest.mark.parametrize(("headers", "reason"), [
    ({}, "not signed in"),
    ({"x-ms-client-principal-name": "alice@contoso.com"}, "malformed"),
    ({"x-ms-client-principal": encode_principal(ENTRA)}, "malformed"),
    ({"x-ms-client-principal-name": "alice@contoso.com", "x-ms-client-principal": "%%% not base64"}, "malformed"),
    ({"x-ms-client-principal-name": "alice@contoso.com",
      "x-ms-client-principal": base64.b64encode(b"not json").decode()}, "malformed"),
    ({"x-ms-client-principal-name": "alice@contoso.com",
      "x-ms-client-principal": encode_principal({"auth_typ": "aad"})}, "malformed"),
    ({"x-ms-client-principal-name": "alice@contoso.com",
      "x-ms-client-principal": encode_principal({"auth_typ": "aad", "claims": [{"typ": "groups", "val": "g"}]})},
     "no name claim"),
    ({"x-ms-client-principal-name": "bob@contoso.com", "x-ms-client-principal": encode_principal(ENTRA)},
     "tampered"),
])
def test_missing_malformed_or_tampered_identity_is_unauthenticated(headers: dict[str, str], reason: str) -> None:
    with pytest.raises(NotAuthenticated, match=reason) as raised:
        principal_from_headers(headers)
    assert raised.value.status == 401


def test_cross_site_posts_are_recognised() -> None:
    origins = request_origins("http://127.0.0.1:7071/api/approvals/x/approve", {"host": "127.0.0.1:7071"},
                              "https://func.azurewebsites.net")
    assert origins == {"http://127.0.0.1:7071", "https://func.azurewebsites.net"}
    assert not is_cross_site({}, origins)  # scripts send no Origin
    assert not is_cross_site({"Origin": "http://127.0.0.1:7071", "Sec-Fetch-Site": "same-origin"}, origins)
    assert not is_cross_site({"origin": "https://func.azurewebsites.net"}, origins)
    assert is_cross_site({"origin": "https://evil.example"}, origins)
    assert is_cross_site({"sec-fetch-site": "cross-site"}, origins)
    assert is_cross_site({"origin": "null"}, origins)


# --- asking --------------------------------------------------------------------------------------------------

def test_request_creates_the_request_notifies_and_returns_the_event(blobs: MemoryBlobStore, clock: ManualClock,
                                                                   config: ApprovalSettings) -> None:
    cause, notifier = registered(), RecordingNotifier()
    event = ask(blobs, clock, config, cause, notifier)

    assert isinstance(event, ApprovalRequested)
    assert (event.correlation_id, event.causation_id) == (cause.correlation_id, cause.id)
    approval_id = event.payload.approval_id
    assert event.payload.approval_url == f"https://func-genaiops.azurewebsites.net/api/approvals/{approval_id}"
    assert event.payload.expires_at == clock.now() + timedelta(minutes=60)
    assert event.payload.approvers == APPROVERS
    assert notifier.calls == [(approval_id, event.payload.approval_url)]
    stored = get_approval(approval_id, blobs)
    assert stored.status == "pending"
    assert stored.metrics == SUBJECT.metrics
    assert stored.gate_summary == SUBJECT.gate_summary
    assert stored.requested_event_id == event.id
    assert blobs.names(APPROVALS) == [f"{approval_id}.json", f"open/{approval_id}"]


def test_a_redelivered_cause_asks_no_second_time(blobs: MemoryBlobStore, clock: ManualClock,
                                                 config: ApprovalSettings) -> None:
    cause, notifier = registered(), RecordingNotifier()
    first = ask(blobs, clock, config, cause, notifier)
    clock.advance(minutes=3)
    again = ask(blobs, clock, config, cause, notifier)
    assert again.id == first.id
    assert again.payload == first.payload  # same expiry: the stored request answers
    assert len(notifier.calls) == 1
    assert len([n for n in blobs.names(APPROVALS) if n.endswith(".json")]) == 1
    assert ask(blobs, clock, config, registered()).payload.approval_id != first.payload.approval_id


def test_no_approvers_is_a_configuration_error(blobs: MemoryBlobStore, clock: ManualClock) -> None:
    with pytest.raises(ApprovalConfigError, match="APPROVERS"):
        ask(blobs, clock, ApprovalSettings(approvers=[]))


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVERS", " alice@contoso.com, ,Bob@Contoso.com,")
    monkeypatch.setenv("APPROVAL_TIMEOUT_MINUTES", "15")
    config = ApprovalSettings.of(Settings())
    assert config.approvers == APPROVERS
    assert config.timeout == timedelta(minutes=15)


# --- deciding ------------------------------------------------------------------------------------------------

def test_granting_records_the_decision_and_publishes_approval_granted(blobs: MemoryBlobStore, clock: ManualClock,
                                                                      config: ApprovalSettings) -> None:
    requested = ask(blobs, clock, config)
    approval_id = requested.payload.approval_id
    clock.advance(minutes=5)
    publisher = RecordingPublisher()
    outcome = decide(approval_id, "granted", Principal("ALICE@contoso.com", "aad"), "  metrics look good ",
                     clock.now(), blobs=blobs, publisher=publisher)

    assert outcome.request.status == "granted"
    assert (outcome.request.decided_by, outcome.request.decided_at) == ("ALICE@contoso.com", clock.now())
    assert outcome.request.comment == "metrics look good"
    assert [entry.action for entry in outcome.request.history] == ["requested", "granted"]
    event = outcome.event
    assert isinstance(event, ApprovalGranted)
    assert publisher.events == [event]
    assert (event.correlation_id, event.causation_id) == (requested.correlation_id, requested.id)
    assert event.occurred_at == clock.now()
    assert event.payload.decided_by == "ALICE@contoso.com"
    stored = get_approval(approval_id, blobs)
    assert stored.event_published
    assert stored.status == "granted"
    assert blobs.names(APPROVALS) == [f"{approval_id}.json"]  # nothing left open
    assert decision_event(stored) == event  # rebuilt identically from the record


def test_decision_errors_in_order_of_precedence(blobs: MemoryBlobStore, clock: ManualClock,
                                                config: ApprovalSettings) -> None:
    approval_id = ask(blobs, clock, config).payload.approval_id
    publisher = RecordingPublisher()

    def attempt(identity: Principal | None, decision: str = "granted", comment: str = "",
                which: str = approval_id) -> None:
        decide(which, decision, identity, comment, clock.now(), blobs=blobs, publisher=publisher)

    with pytest.raises(NotAuthenticated):
        attempt(None)
    for unknown in ("0" * 32, "../secrets", "a/b", ""):
        with pytest.raises(ApprovalNotFound):
            attempt(ALICE, which=unknown)
    with pytest.raises(NotAnApprover) as forbidden:
        attempt(Principal("mallory@contoso.com", "aad"))
    assert forbidden.value.status == 403
    with pytest.raises(InvalidDecision):
        attempt(ALICE, comment="x" * 2001)
    with pytest.raises(InvalidDecision):
        attempt(ALICE, decision="maybe")
    assert publisher.events == []
    assert get_approval(approval_id, blobs).status == "pending"

    attempt(Principal("bob@contoso.com", "aad"), "rejected", "not yet")
    with pytest.raises(AlreadyDecided, match=r"already rejected by bob@contoso\.com") as again:
        attempt(ALICE, "granted")
    assert again.value.status == 409
    assert again.value.request is not None
    assert again.value.request.status == "rejected"
    assert [e.type for e in publisher.events] == ["approval.rejected"]


class InterleavedReads(MemoryBlobStore):
    """The worst interleaving, every time: the first `readers` reads of a request wait for each other, so every
    decider reads the same pending state (and ETag) before any of them writes."""

    def __init__(self, readers: int) -> None:
        super().__init__()
        self._barrier = threading.Barrier(readers)
        self._waiting = readers

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        result = super().read(container, name)
        with self._lock:
            wait = container == APPROVALS and name.endswith(".json") and self._waiting > 0
            self._waiting -= wait
        if wait:
            self._barrier.wait(timeout=10)
        return result


def test_concurrent_decisions_record_exactly_one(clock: ManualClock, config: ApprovalSettings) -> None:
    blobs = InterleavedReads(readers=4)
    approval_id = ask(blobs, clock, config).payload.approval_id
    publisher = RecordingPublisher()
    results: list[str] = []

    def click(index: int) -> None:
        try:
            decide(approval_id, "granted" if index % 2 else "rejected", Principal(APPROVERS[index % 2], "aad"),
                   f"click {index}", clock.now(), blobs=blobs, publisher=publisher)
            results.append("won")
        except AlreadyDecided:
            results.append("409")

    threads = [threading.Thread(target=click, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(results) == ["409"] * 3 + ["won"]
    assert len(publisher.events) == 1
    stored = get_approval(approval_id, blobs)
    assert publisher.events[0].type == f"approval.{stored.status}"
    assert len(stored.history) == 2


def test_expiry_is_swept_once_and_then_decisions_are_gone(blobs: MemoryBlobStore, clock: ManualClock,
                                                           config: ApprovalSettings) -> None:
    requested = ask(blobs, clock, config)
    approval_id = requested.payload.approval_id
    publisher = RecordingPublisher()
    clock.advance(minutes=59)
    assert expire_due(clock.now(), blobs=blobs, publisher=publisher) == []

    clock.advance(minutes=1)  # exactly at the expiry: too late to decide
    with pytest.raises(RequestExpired) as gone:
        decide(approval_id, "granted", ALICE, "", clock.now(), blobs=blobs, publisher=publisher)
    assert gone.value.status == 410

    clock.advance(seconds=30)
    expired = expire_due(clock.now(), blobs=blobs, publisher=publisher)
    assert [type(e) for e in expired] == [ApprovalExpired]
    assert expired[0].payload.decided_at == requested.payload.expires_at
    assert expired[0].causation_id == requested.id
    assert publisher.events == expired
    assert expire_due(clock.now(), blobs=blobs, publisher=publisher) == []  # idempotent
    assert len(publisher.events) == 1
    stored = get_approval(approval_id, blobs)
    assert (stored.status, stored.decided_by) == ("expired", "system")
    with pytest.raises(RequestExpired):
        decide(approval_id, "granted", ALICE, "", clock.now(), blobs=blobs, publisher=publisher)


def test_an_unsent_decision_event_is_re_sent_by_the_sweep(blobs: MemoryBlobStore, clock: ManualClock,
                                                          config: ApprovalSettings) -> None:
    approval_id = ask(blobs, clock, config).payload.approval_id
    publisher = RecordingPublisher(fail_times=1)
    outcome = decide(approval_id, "granted", ALICE, "ok", clock.now(), blobs=blobs, publisher=publisher)
    assert outcome.request.status == "granted"  # recorded although the bus was down
    assert publisher.events == []
    assert not get_approval(approval_id, blobs).event_published
    assert f"open/{approval_id}" in blobs.names(APPROVALS)

    clock.advance(seconds=10)  # the decision's own publish may still be under way: not yet
    assert expire_due(clock.now(), blobs=blobs, publisher=publisher) == []
    assert publisher.events == []
    clock.advance(minutes=1)
    assert expire_due(clock.now(), blobs=blobs, publisher=publisher) == []  # nothing newly expired...
    assert publisher.events == [outcome.event]  # ...but the decision went out, with the same id and time
    assert get_approval(approval_id, blobs).event_published
    assert f"open/{approval_id}" not in blobs.names(APPROVALS)


def test_a_marker_without_its_request_is_dropped_after_a_grace_period(blobs: MemoryBlobStore,
                                                                      clock: ManualClock) -> None:
    ApprovalStore(blobs).mark_open("abandoned")
    publisher = RecordingPublisher()
    assert expire_due(datetime.now(UTC), blobs=blobs, publisher=publisher) == []
    assert blobs.names(APPROVALS) == ["open/abandoned"]
    assert expire_due(datetime.now(UTC) + timedelta(minutes=11), blobs=blobs, publisher=publisher) == []
    assert blobs.names(APPROVALS) == []


# --- notifying -----------------------------------------------------------------------------------------------

def stored_request(blobs: MemoryBlobStore, clock: ManualClock, config: ApprovalSettings) -> ApprovalRequest:
    return get_approval(ask(blobs, clock, config).payload.approval_id, blobs)


def test_webhook_receives_title_text_and_link(blobs: MemoryBlobStore, clock: ManualClock,
                                              config: ApprovalSettings) -> None:
    with Webhook([]) as hook:
        event = ask(blobs, clock, config, notifier=WebhookNotifier(hook.url))
    assert len(hook.received) == 1
    message = hook.received[0]
    assert set(message) == {"title", "text", "link"}
    assert message["link"] == event.payload.approval_url
    assert message["title"] == "Approval needed: math_coding math_coding v7"
    assert "accuracy 0.875" in message["text"]
    assert "accuracy >= 0.8 passed" in message["text"]


def test_a_failing_webhook_does_not_fail_the_request(blobs: MemoryBlobStore, clock: ManualClock,
                                                     config: ApprovalSettings,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with Webhook([500] * 10) as hook, caplog.at_level(logging.INFO, "genaiops"):
        notifier = WebhookNotifier(hook.url, sleep=lambda _: None)
        event = ask(blobs, clock, config, notifier=notifier)
    assert len(hook.received) == 4  # one try and three bounded retries
    assert get_approval(event.payload.approval_id, blobs).status == "pending"
    assert "failed 4 times" in caplog.text
    assert "secret-token" not in caplog.text  # the URL's token is never logged


# --- the page ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("accept", "fmt", "html"), [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None, True),  # a browser
    ("*/*", None, False),  # requests, curl
    ("application/json", None, False),
    ("application/json, text/html;q=0.5", None, False),
    (None, None, False),
    ("application/json", "html", True),
    ("text/html", "json", False),
])
def test_content_negotiation(accept: str | None, fmt: str | None, html: bool) -> None:
    assert wants_html(accept, fmt) is html


def page_for(request: ApprovalRequest, now: datetime, viewer: Principal | None = ALICE) -> str:
    page = render_approval_page(request, now=now, page_path="/api/approvals/" + request.approval_id,
                                viewer=viewer)
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"])
    assert nonce is not None
    assert page.body.count(f'nonce="{nonce.group(1)}"') == 2  # the style and the script, nothing else
    assert page.headers["X-Frame-Options"] == "DENY"
    return page.body


def test_open_request_page_shows_the_evidence_and_the_buttons(blobs: MemoryBlobStore, clock: ManualClock,
                                                              config: ApprovalSettings) -> None:
    request = stored_request(blobs, clock, config).model_copy(update={
        "gate_summary": ["accuracy >= 0.8 passed", "error_rate <= 0.1 failed: <script>alert(1)</script>"],
        "report_uri": "javascript:alert(1)",
    })
    body = page_for(request, clock.now())
    assert "math_coding" in body
    assert '<td class="metric-name">accuracy</td><td class="num">0.875</td>' in body
    assert '<li class="pass">' in body
    assert '<li class="fail">' in body
    assert "<script>alert(1)" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert 'href="javascript:' not in body  # only http(s) report URIs become links
    assert 'id="approve"' in body
    assert 'id="reject"' in body
    assert f'data-endpoint="/api/approvals/{request.approval_id}/approve"' in body
    # The page never holds a function key: the form posts to the same origin, the session goes along.
    assert f'formaction="/api/approvals/{request.approval_id}/approve"' in body
    assert "data-key" not in body
    assert "x-functions-key" not in body.lower()
    assert "code=" not in body
    assert "1h 00m left" in body
    assert "Signed in as <b>alice@contoso.com</b>" in body
    assert "not an approver" in page_for(request, clock.now(), Principal("mallory@contoso.com", "aad"))
    assert "Not signed in" in page_for(request, clock.now(), None)


def test_decided_request_page_shows_the_decision_without_buttons(blobs: MemoryBlobStore, clock: ManualClock,
                                                                 config: ApprovalSettings) -> None:
    request = stored_request(blobs, clock, config).model_copy(update={"report_uri": "https://reports.example/r"})
    decided = request.decided("rejected", "bob@contoso.com", "error rate <b>too</b> high", clock.now())
    body = page_for(decided, clock.now())
    assert 'id="approve"' not in body
    assert 'data-status="rejected"' in body
    assert "by <b>bob@contoso.com</b>" in body
    assert "error rate &lt;b&gt;too&lt;/b&gt; high" in body
    assert 'href="https://reports.example/r"' in body
    past_due = page_for(request, clock.now() + timedelta(hours=2))
    assert 'data-status="expired"' in past_due
    assert 'id="approve"' not in past_due


# --- the local host's App Service authentication -------------------------------------------------------------

def test_session_tokens_are_signed_and_expire() -> None:
    now = [1_000_000.0]
    signer = SessionSigner(b"secret", clock=lambda: now[0])
    token = signer.issue("alice@contoso.com", lifetime_seconds=60)
    assert signer.verify(token) == "alice@contoso.com"
    assert SessionSigner(b"other secret").verify(token) is None
    version, payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "mallory@contoso.com", "exp": 2_000_000}).encode())
    assert signer.verify(f"{version}.{forged.decode().rstrip('=')}.{signature}") is None
    assert signer.verify(f"{version}.{payload}.{signature[:-2]}xx") is None
    assert signer.verify("garbage") is None
    now[0] += 61
    assert signer.verify(token) is None
    with pytest.raises(ValueError, match="principal name"):
        signer.issue("alice\r\nx-ms-client-principal-name: admin")


@pytest.fixture
def easy_auth() -> LocalAppServiceAuth:
    return LocalAppServiceAuth(lambda: b"local test secret")


def test_client_supplied_principal_headers_are_always_dropped(easy_auth: LocalAppServiceAuth) -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com", "x-ms-client-principal": "e30=",
              "X-MS-TOKEN-AAD-ID-TOKEN": "t", "accept": "*/*"}
    assert easy_auth.authenticate(forged) == {"accept": "*/*"}


def test_a_valid_session_injects_the_principal(easy_auth: LocalAppServiceAuth) -> None:
    token = easy_auth.signer.issue("alice@contoso.com")
    for presented in ({"cookie": f"theme=dark; {SESSION_COOKIE}={token}"}, {"authorization": f"Bearer {token}"}):
        headers = easy_auth.authenticate({**presented, "x-ms-client-principal-name": "mallory@contoso.com"})
        assert principal_from_headers(headers).name == "alice@contoso.com"
        assert headers["x-ms-client-principal-idp"] == "local"
    tampered = {"authorization": f"Bearer {token[:-3]}abc", "cookie": f"{SESSION_COOKIE}={token}"}
    assert "x-ms-client-principal-name" not in easy_auth.authenticate(tampered)  # the bearer token alone decides


def test_local_login_sets_the_session_cookie_and_redirects_only_locally(easy_auth: LocalAppServiceAuth) -> None:
    def login(query: str) -> func.HttpResponse:
        response = easy_auth.handle("GET", urlsplit(f"http://127.0.0.1:7071/.auth/login/local?{query}"), {})
        assert response is not None
        return response

    response = login("user=alice@contoso.com&redirect=/api/approvals/abc%3Fcode%3Dk%26format%3Dhtml")
    assert response.status_code == 302
    assert response.headers["Location"] == "/api/approvals/abc?code=k&format=html"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert easy_auth.signer.verify(token) == "alice@contoso.com"
    for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        assert login(f"user=alice@contoso.com&redirect={evil}").headers["Location"] == "/"
    assert login("user=").status_code == 400
    assert easy_auth.handle("GET", urlsplit("http://h/.auth/login/aad"), {}).status_code == 404
    assert easy_auth.handle("GET", urlsplit("http://h/api/approvals/x"), {}) is None
    logout = easy_auth.handle("GET", urlsplit("http://h/.auth/logout"), {})
    assert "Max-Age=0" in logout.headers["Set-Cookie"]
