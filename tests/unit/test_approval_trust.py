"""Who may be trusted as an approver: the X-MS-CLIENT-PRINCIPAL* headers count only when App Service
authentication is on (WEBSITE_AUTH_ENABLED=True, set by the platform — or by the local host emulating it).
Without it, approvals are refused (approval.rejected by "system", logged) and every approval route answers 503;
with it, the routes need no function key but a signed-in person (a browser is sent to sign in)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
import pytest

import functions.approvals as routes
from localstack.host.app_service_auth import LocalAppServiceAuth, principal_headers
from shared.application import Application
from shared.approvals import NotAuthenticated
from shared.approvals.identity import IdentitySource
from shared.approvals.models import IdentitySourceMissing
from shared.blob_layout import APPROVALS
from shared.bootstrap import build_deployments
from shared.events import ApprovalRejected, ApprovalRequested
from shared.registry.blob_registry import BlobRegistry
from shared.services.approvals import ApprovalSettings, request_approval
from shared.settings import Settings
from tests.fakes.bus import in_memory_ports
from tests.fakes.memory import ManualClock, MemoryBlobStore, RecordingNotifier, RecordingPublisher
from tests.unit.test_approvals import (
    APPROVERS,
    ENTRA,
    SETTINGS,
    SUBJECT,
    encode_principal,
    registered,
)

ALICE_HEADERS = principal_headers("alice@contoso.com")
FORGED = {"x-ms-client-principal-name": "alice@contoso.com", "x-ms-client-principal": encode_principal(ENTRA)}


def settings(enabled: bool, provider: str = "") -> ApprovalSettings:
    return ApprovalSettings(approvers=APPROVERS, app_service_auth_enabled=enabled,
                            app_service_auth_provider=provider)


# --- the identity decision -------------------------------------------------------------------------------------

def test_headers_are_trusted_only_when_the_platform_says_authentication_is_on() -> None:
    on = IdentitySource(enabled=True)
    assert on.principal(ALICE_HEADERS).name == "alice@contoso.com"
    with pytest.raises(NotAuthenticated, match="not signed in"):
        on.principal({"x-functions-key": "a-valid-key"})  # a key is not a person

    off = IdentitySource(enabled=False)
    for headers in (ALICE_HEADERS, FORGED, {}):  # well-formed or not: with authentication off anyone can send them
        with pytest.raises(IdentitySourceMissing, match="WEBSITE_AUTH_ENABLED") as refused:
            off.principal(headers)
        assert refused.value.status == 503
        assert "approver_auth_enabled" in refused.value.message
        assert off.viewer(headers) is None


@pytest.mark.parametrize(("value", "enabled"), [
    ("True", True), ("true", True), (" TRUE ", True),
    ("False", False), ("", False), ("1", False), ("yes", False), (None, False),
])
def test_the_trusted_source_comes_from_website_auth_enabled(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                                            enabled: bool) -> None:
    if value is None:
        monkeypatch.delenv("WEBSITE_AUTH_ENABLED", raising=False)
    else:
        monkeypatch.setenv("WEBSITE_AUTH_ENABLED", value)
    monkeypatch.setenv("WEBSITE_AUTH_DEFAULT_PROVIDER", "AzureActiveDirectory")
    source = ApprovalSettings.of(Settings()).identity_source()
    assert source.enabled is enabled
    assert source.sign_in_url("/api/approvals/a1?format=html") == (
        "/.auth/login/aad?post_login_redirect_uri=/api/approvals/a1%3Fformat%3Dhtml")
    assert settings(True, "local").identity_source().provider == "local"
    assert settings(True).identity_source().provider == "aad"


# --- asking: refused without a trusted source ----------------------------------------------------------------

def test_without_a_trusted_source_no_approval_is_created_and_the_run_ends(clock: ManualClock,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    blobs, notifier, cause = MemoryBlobStore(), RecordingNotifier(), registered()
    with caplog.at_level(logging.ERROR, logger="genaiops.approvals"):
        event = request_approval(cause, SUBJECT, blobs=blobs, clock=clock, settings=SETTINGS,
                                 config=settings(False), notifier=notifier)
    assert isinstance(event, ApprovalRejected)
    assert (event.payload.decided_by, event.causation_id) == ("system", cause.id)
    assert "no trusted identity source" in event.payload.comment
    assert "approver_auth_enabled" in event.payload.comment
    assert blobs.names(APPROVALS) == []  # nothing an approver (or a key holder) could decide
    assert notifier.calls == []
    assert any("no trusted identity source" in record.getMessage() for record in caplog.records)
    again = request_approval(cause, SUBJECT, blobs=blobs, clock=clock, settings=SETTINGS, config=settings(False),
                             notifier=notifier)
    assert again.id == event.id  # a redelivery says the same, once


def test_the_flow_registered_handler_reports_the_refusal_instead_of_retrying(tmp_path: Path,
                                                                            clock: ManualClock) -> None:
    ports = in_memory_ports(tmp_path, clock, settings=SETTINGS, approvals=settings(False),
                            notifier=RecordingNotifier())
    result = ports.handle(registered())
    assert [event.type for event in ports.publisher.events] == ["approval.rejected"]  # handled: no exception, no retry
    assert result.handler == "on_flow_registered"

    trusted = replace(ports, approvals=settings(True), publisher=RecordingPublisher())
    trusted.handle(registered("run-2"))
    assert [event.type for event in trusted.publisher.events] == ["approval.requested"]


# --- the HTTP routes -------------------------------------------------------------------------------------------

@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> Application:
    """The application over in-memory ports: decisions go through its message bus."""
    blobs = MemoryBlobStore()
    application = Application(SETTINGS, blobs, RecordingPublisher(), clock, None,  # type: ignore[arg-type]
                              BlobRegistry(blobs, clock), build_deployments(SETTINGS, blobs, clock))
    application.approvals = settings(True)
    monkeypatch.setattr(routes, "get_application", lambda: application)
    return application


def published(app: Application) -> list[str]:
    """The types of the events the run published (the journal sees every publish)."""
    return [event.type for event in app.journal.events_for(registered().correlation_id)]


def ask(app: Application) -> str:
    event = request_approval(registered(), SUBJECT, blobs=app.blobs, clock=app.clock, settings=SETTINGS,
                             config=settings(True), notifier=RecordingNotifier())
    assert isinstance(event, ApprovalRequested)
    return event.payload.approval_id


def call(route: Any, approval_id: str, *, method: str = "GET", action: str = "", headers: dict[str, str] | None = None,
         params: dict[str, str] | None = None, body: bytes = b"") -> func.HttpResponse:
    path = f"/api/approvals/{approval_id}" + (f"/{action}" if action else "")
    query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
    request = func.HttpRequest(method=method, url=f"{SETTINGS.public_base_url}{path}" + (f"?{query}" if query else ""),
                               headers=headers or {}, params=params or {}, route_params={"approval_id": approval_id},
                               body=body)
    return route.build().get_user_function()(request)


def test_routes_need_no_function_key_but_a_signed_in_person() -> None:
    for route in (routes.approval, routes.approve, routes.reject):
        trigger = route.build().get_trigger()
        assert str(getattr(trigger.auth_level, "value", trigger.auth_level)).lower() == "anonymous"


def test_a_key_holder_without_identity_gets_401_and_a_browser_is_sent_to_sign_in(app: Application) -> None:
    approval_id = ask(app)
    key = {"x-functions-key": "a-valid-key"}
    as_json = call(routes.approval, approval_id, headers=key)
    assert as_json.status_code == 401
    body = json.loads(as_json.get_body())
    assert body["error"] == "unauthenticated"
    assert body["sign_in"].startswith("/.auth/login/aad?post_login_redirect_uri=")

    browser = call(routes.approval, approval_id, headers={"accept": "text/html"}, params={"code": "leaked-key"})
    assert browser.status_code == 302
    location = urlsplit(browser.headers["Location"])
    assert location.path == "/.auth/login/aad"
    back = parse_qs(location.query)["post_login_redirect_uri"][0]
    assert back == f"/api/approvals/{approval_id}?format=html"  # back to the page, and no key in any URL

    posted = call(routes.approve, approval_id, method="POST", headers=key, body=b"{}")
    assert posted.status_code == 401  # (made-up principal headers never get here: the platform strips them)
    assert published(app) == []


def test_a_signed_in_person_opens_the_page_and_an_approver_decides(app: Application) -> None:
    approval_id = ask(app)
    page = call(routes.approval, approval_id, headers={"accept": "text/html", **ALICE_HEADERS})
    assert page.status_code == 200
    assert "Signed in as <b>alice@contoso.com</b>" in page.get_body().decode()
    assert call(routes.approval, "0" * 32, headers=ALICE_HEADERS).status_code == 404
    decided = call(routes.approve, approval_id, method="POST", headers=ALICE_HEADERS, body=b'{"comment": "ok"}')
    assert decided.status_code == 200
    assert published(app) == ["approval.granted"]


def test_without_a_trusted_source_every_route_refuses_with_how_to_enable_it(app: Application,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    approval_id = ask(app)
    app.approvals = settings(False)
    with caplog.at_level(logging.ERROR, logger="genaiops.approvals"):
        for route, method, action in ((routes.approval, "GET", ""), (routes.approve, "POST", "approve"),
                                      (routes.reject, "POST", "reject")):
            for headers in (ALICE_HEADERS, FORGED, {"accept": "text/html", **ALICE_HEADERS}):
                answer = call(route, approval_id, method=method, action=action, headers=headers, body=b"{}")
                assert answer.status_code == 503, (route, headers)
                body = json.loads(answer.get_body())
                assert body["error"] == "identity_source_missing"
                assert "App Service authentication" in body["message"]
                assert "WEBSITE_AUTH_ENABLED" in body["message"]
    assert published(app) == []
    assert json.loads(app.blobs.read(APPROVALS, f"{approval_id}.json")[0])["status"] == "pending"
    assert any("approval route refused" in record.getMessage() for record in caplog.records)


# --- the local host announces (or not) its emulation -----------------------------------------------------------

def test_the_local_host_tells_the_app_that_authentication_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBSITE_AUTH_ENABLED", "WEBSITE_AUTH_DEFAULT_PROVIDER"):
        monkeypatch.setenv(name, "")  # so monkeypatch restores what the host writes
        monkeypatch.delenv(name)
    easy_auth = LocalAppServiceAuth.from_environment()
    assert easy_auth.enabled
    source = ApprovalSettings.of(Settings()).identity_source()
    assert (source.enabled, source.provider) == (True, "local")


def test_with_the_emulation_off_the_local_host_is_azure_without_authentication(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "false")
    easy_auth = LocalAppServiceAuth.from_environment()
    assert not easy_auth.enabled
    assert ApprovalSettings().identity_source().enabled is False
    assert easy_auth.authenticate({**FORGED, "accept": "*/*"}) == {**FORGED, "accept": "*/*"}  # neither strips
    assert easy_auth.handle("GET", urlsplit("http://h/.auth/login/local?user=alice@contoso.com"), {}) is None


def test_local_sign_in_without_a_user_asks_for_one() -> None:
    easy_auth = LocalAppServiceAuth(lambda: b"local test secret")
    form = easy_auth.handle("GET", urlsplit(
        'http://h/.auth/login/local?post_login_redirect_uri=/api/approvals/a1%3Fformat%3Dhtml%22%3E'), {})
    assert form is not None
    assert form.status_code == 200
    text = form.get_body().decode()
    assert 'name="user"' in text
    assert 'value="/api/approvals/a1?format=html&quot;&gt;"' in text  # escaped: the target cannot break out
