"""The approval routes' HTTP without azure.functions (shared/approvals/web.py): body parsing, the cross-site check,
page paths, and decisions as commands through the application's message bus over in-memory ports."""

from __future__ import annotations

import json

import pytest

from localstack.host.app_service_auth import principal_headers
from shared.application import Application
from shared.approvals import web
from shared.approvals.models import InvalidDecision
from shared.bootstrap import build_deployments
from shared.events import ApprovalRequested
from shared.registry.blob_registry import BlobRegistry
from shared.services.approvals import ApprovalSettings, request_approval
from tests.fakes.memory import ManualClock, MemoryBlobStore, RecordingNotifier, RecordingPublisher
from tests.unit.test_approvals import APPROVERS, SETTINGS, SUBJECT, registered

BASE = SETTINGS.public_base_url
ALICE = principal_headers("alice@contoso.com")


@pytest.fixture
def app(clock: ManualClock) -> tuple[Application, RecordingPublisher]:
    blobs, bus = MemoryBlobStore(), RecordingPublisher()
    application = Application(SETTINGS, blobs, bus, clock, None,  # type: ignore[arg-type]  # runs no flow
                              BlobRegistry(blobs, clock), build_deployments(SETTINGS, blobs, clock))
    application.approvals = ApprovalSettings(approvers=APPROVERS, app_service_auth_enabled=True)
    return application, bus


def ask(app: Application) -> str:
    event = request_approval(registered(), SUBJECT, blobs=app.blobs, clock=app.clock, settings=SETTINGS,
                             config=app.approvals, notifier=RecordingNotifier())
    assert isinstance(event, ApprovalRequested)
    return event.payload.approval_id


def post(approval_id: str, action: str, body: bytes, **headers: str) -> web.WebRequest:
    return web.WebRequest(url=f"{BASE}/api/approvals/{approval_id}/{action}", approval_id=approval_id,
                          headers={**{k.lower(): v for k, v in ALICE.items()}, **headers}, body=body)


@pytest.mark.parametrize(("content_type", "body", "comment"), [
    ("application/json", b'{"comment": "fine"}', "fine"),
    ("application/json", b"", ""),
    ("application/x-www-form-urlencoded", b"comment=error+rate+%26+latency", "error rate & latency"),
    ("application/x-www-form-urlencoded; charset=utf-8", b"comment=a&comment=b", "b"),  # the last one counts
    ("", b'{"comment": "no type", "extra": 1}', "no type"),
])
def test_the_comment_comes_from_json_or_a_form(content_type: str, body: bytes, comment: str) -> None:
    assert web.comment_of(post("a1", "approve", body, **{"content-type": content_type})) == comment


@pytest.mark.parametrize(("body", "problem"), [
    (b"{not json", "must be JSON or a form"),
    (b"[" * 5000, "must be JSON or a form"),
    (b'{"comment": 7}', "at most"),
    (json.dumps({"comment": "x" * 2001}).encode(), "at most 2000"),
])
def test_a_body_that_is_not_a_comment_is_400(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidDecision, match=problem) as refused:
        web.comment_of(post("a1", "approve", body))
    assert refused.value.status == 400


def test_page_paths_and_the_sign_in_return_path() -> None:
    assert web.page_path(f"{BASE}/api/approvals/a1/approve") == "/api/approvals/a1"
    assert web.page_path(f"{BASE}/api/approvals/a1/") == "/api/approvals/a1"
    request = web.WebRequest(url=f"{BASE}/api/approvals/a1?code=secret-key&lang=en", approval_id="a1", headers={})
    assert web.return_path(request) == "/api/approvals/a1?lang=en&format=html"  # the function key never travels


def test_a_cross_site_post_is_refused_before_anything_is_decided(app: tuple[Application, RecordingPublisher]) -> None:
    application, bus = app
    approval_id = ask(application)
    answer = web.decide(post(approval_id, "approve", b"{}", origin="https://evil.example"), "granted", application)
    assert (answer.status, json.loads(answer.body)["error"]) == (403, "cross_site")
    assert bus.events == []


@pytest.mark.parametrize("approval_id", ["a" * 257, "-starts-badly", "has space"])
def test_a_decision_on_an_id_no_approval_can_have_is_404(app: tuple[Application, RecordingPublisher],
                                                        approval_id: str) -> None:
    application, bus = app
    answer = web.decide(post(approval_id, "approve", b"{}", origin=BASE), "granted", application)
    assert answer.status == 404, answer.body  # the route fuzz found a 500 for 257 characters
    assert bus.events == []


def test_the_same_form_posted_twice_decides_once_and_answers_both(app: tuple[Application, RecordingPublisher]) -> None:
    application, bus = app
    approval_id = ask(application)
    form = post(approval_id, "approve", b"comment=ship+it", accept="text/html", origin=BASE,
                **{"content-type": "application/x-www-form-urlencoded"})
    first, second = (web.decide(form, "granted", application) for _ in range(2))
    assert (first.status, second.status) == (200, 200)
    assert 'data-status="granted"' in second.body
    assert first.mimetype == "text/html"
    assert [event.type for event in bus.events] == ["approval.granted"]
    other = web.decide(post(approval_id, "reject", b'{"comment": "no"}'), "rejected", application)
    assert other.status == 409  # another decision is still refused: a decision is final


def test_a_json_decision_names_the_event_it_published(app: tuple[Application, RecordingPublisher]) -> None:
    application, bus = app
    approval_id = ask(application)
    answer = web.decide(post(approval_id, "approve", b'{"comment": "ok"}'), "granted", application)
    body = json.loads(answer.body)
    assert (answer.status, body["approval"]["status"]) == (200, "granted")
    assert body["event"] == {"id": bus.events[0].id, "type": "approval.granted"}


def test_the_page_sends_a_browser_to_sign_in_and_answers_json_to_a_script(
        app: tuple[Application, RecordingPublisher]) -> None:
    application, _ = app
    approval_id = ask(application)
    anonymous = web.WebRequest(url=f"{BASE}/api/approvals/{approval_id}", approval_id=approval_id,
                               headers={"accept": "text/html"})
    redirect = web.show(anonymous, application)
    assert redirect.status == 302
    assert redirect.headers["Location"].startswith("/.auth/login/aad?post_login_redirect_uri=")
    signed_in = web.WebRequest(url=anonymous.url, approval_id=approval_id,
                               headers={k.lower(): v for k, v in ALICE.items()})
    shown = json.loads(web.show(signed_in, application).body)
    assert (shown["status"], shown["open"]) == ("pending", True)
