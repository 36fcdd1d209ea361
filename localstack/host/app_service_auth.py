"""App Service authentication ("Easy Auth"), emulated in front of the local host's HTTP routes.

Like the real module it always drops client-supplied `X-MS-CLIENT-PRINCIPAL*` / `X-MS-TOKEN-*` headers, and
for a request with a valid session it injects `X-MS-CLIENT-PRINCIPAL-NAME`, `-ID`, `-IDP` and the base64 JSON
`X-MS-CLIENT-PRINCIPAL` ({auth_typ, name_typ, role_typ, claims}) — so the app's identity code runs unchanged.

Sessions: `GET /.auth/login/local?user=<name>&redirect=<path>` (the local stand-in for `/.auth/login/<provider>`)
sets the HttpOnly cookie `AppServiceAuthSession`; scripts and tests send the same token as
`Authorization: Bearer <token>` (`local_session_token`). A token is the user name and an expiry, HMAC-signed
with a random secret kept beside the function keys (azure-webjobs-secrets/{hostId}/auth.json). A tampered or
expired token yields no identity. `/.auth/logout` clears the cookie.

`/.auth/login/local` without `user` (where the app sends a browser that is not signed in) asks for the name.

Like the platform, the host tells the app that authentication is on: it sets `WEBSITE_AUTH_ENABLED=True` and
`WEBSITE_AUTH_DEFAULT_PROVIDER=local` in the environment the app reads its settings from, so the app trusts the
injected principal by the same rule as in Azure. `WEBSITE_AUTH_ENABLED=false` in the local settings turns the
emulation off, as authentication off in Azure: client headers pass through untouched, nothing is injected,
`/.auth/*` does not exist — and the app then refuses approvals.

Local only: anyone who can reach 127.0.0.1 can sign in as anyone, which is the point of a local login.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from html import escape
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl

import azure.functions as func

from localstack.host.connections import HOST_STORAGE, blob_service

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

SESSION_COOKIE = "AppServiceAuthSession"
PROVIDER = "local"
AUTH_PREFIX = "/.auth/"
SESSION_SECONDS = 8 * 3600  # Easy Auth's default session lifetime
NAME_CLAIM = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ROLE_CLAIM = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
_INJECTED = ("x-ms-client-principal", "x-ms-token-")
ENABLED_SETTING = "WEBSITE_AUTH_ENABLED"  # what App Service sets when authentication is on
PROVIDER_SETTING = "WEBSITE_AUTH_DEFAULT_PROVIDER"
_OFF = ("false", "0", "no", "off")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,255}$")  # UPN / e-mail shaped; nothing that breaks a header


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """`v1.<payload>.<signature>`: payload = {"sub": user, "exp": unix time}, HMAC-SHA256 over `v1.<payload>`."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock

    def issue(self, user: str, lifetime_seconds: int = SESSION_SECONDS) -> str:
        if not _USER.fullmatch(user):
            raise ValueError("user must look like a principal name (letters, digits and ._@+-)")
        payload = _b64(json.dumps({"sub": user, "exp": int(self._clock()) + lifetime_seconds}).encode())
        return f"v1.{payload}.{self._sign(f'v1.{payload}')}"

    def verify(self, token: str) -> str | None:
        version, _, rest = token.strip().partition(".")
        payload, _, signature = rest.partition(".")
        if version != "v1" or not payload or not signature:
            return None
        if not hmac.compare_digest(signature, self._sign(f"v1.{payload}")):
            return None
        try:
            claims = json.loads(_unb64(payload))
            user, expires = str(claims["sub"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        return user if expires > self._clock() and _USER.fullmatch(user) else None

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._secret, text.encode(), hashlib.sha256).digest())


def principal_headers(user: str) -> dict[str, str]:
    """What Easy Auth hands the app for a signed-in user."""
    principal = {"auth_typ": PROVIDER, "name_typ": NAME_CLAIM, "role_typ": ROLE_CLAIM,
                 "claims": [{"typ": NAME_CLAIM, "val": user}, {"typ": "preferred_username", "val": user}]}
    return {
        "x-ms-client-principal-name": user,
        "x-ms-client-principal-id": uuid.uuid5(uuid.NAMESPACE_URL, f"local-user:{user.lower()}").hex,
        "x-ms-client-principal-idp": PROVIDER,
        "x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode(),
    }


# --- the secret, beside the function keys ------------------------------------------------------------------

def load_or_create_auth_secret(service: BlobServiceClient, host_id: str) -> bytes:
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

    from localstack.host.keys import SECRETS_CONTAINER

    blob = service.get_blob_client(SECRETS_CONTAINER, f"{host_id}/auth.json")
    try:
        document = json.loads(blob.download_blob().readall())
    except ResourceNotFoundError:
        document = {"sessionSigningKey": secrets.token_urlsafe(32)}
        with contextlib.suppress(ResourceExistsError):
            service.create_container(SECRETS_CONTAINER)
        try:
            blob.upload_blob(json.dumps(document).encode(), overwrite=False)
        except ResourceExistsError:  # another process created it first: use theirs
            document = json.loads(blob.download_blob().readall())
    return str(document["sessionSigningKey"]).encode()


def local_session_token(storage_connection_string: str, user: str, host_id: str = "genaiops-local",
                        lifetime_seconds: int = SESSION_SECONDS) -> str:
    """A session for `user` on the local host: send it as `Authorization: Bearer <token>` or the
    `AppServiceAuthSession` cookie."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(storage_connection_string)
    return SessionSigner(load_or_create_auth_secret(service, host_id)).issue(user, lifetime_seconds)


# --- the module in front of the routes ---------------------------------------------------------------------

class LocalAppServiceAuth:
    def __init__(self, secret: Callable[[], bytes], enabled: bool = True) -> None:
        self._load_secret = secret
        self._signer: SessionSigner | None = None
        self._lock = threading.Lock()
        self.enabled = enabled

    @classmethod
    def from_environment(cls) -> LocalAppServiceAuth:
        """The host's storage and id, as the host itself reads them; the secret loads on first use, so requests
        without a session never touch storage. Announces the emulation to the app (same process, same
        environment) the way App Service does, unless the local settings turned it off."""
        enabled = os.environ.get(ENABLED_SETTING, "").strip().lower() not in _OFF
        os.environ[ENABLED_SETTING] = "True" if enabled else "False"
        if enabled:
            os.environ[PROVIDER_SETTING] = PROVIDER
        return cls(lambda: load_or_create_auth_secret(
            blob_service(HOST_STORAGE), os.environ.get("AzureFunctionsWebHost__hostid", "genaiops-local")),
            enabled=enabled)

    @property
    def signer(self) -> SessionSigner:
        with self._lock:
            if self._signer is None:
                self._signer = SessionSigner(self._load_secret())
            return self._signer

    def authenticate(self, headers: dict[str, str]) -> dict[str, str]:
        """The headers the app sees: the client's principal headers dropped, the session's injected. With the
        emulation off, the client's headers unchanged (as App Service with authentication off)."""
        if not self.enabled:
            return dict(headers)
        cleaned = {name: value for name, value in headers.items() if not name.lower().startswith(_INJECTED)}
        token = self._presented_token(cleaned)
        user = self.signer.verify(token) if token else None
        return {**cleaned, **principal_headers(user)} if user else cleaned

    @staticmethod
    def _presented_token(headers: dict[str, str]) -> str | None:
        lowered = {name.lower(): value for name, value in headers.items()}
        scheme, _, credentials = lowered.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip()  # a presented bearer token alone decides, valid or not
        cookie = SimpleCookie()
        try:
            cookie.load(lowered.get("cookie", ""))
        except CookieError:
            return None
        morsel = cookie.get(SESSION_COOKIE)
        return morsel.value if morsel else None

    def handle(self, method: str, url: SplitResult, headers: dict[str, str]) -> func.HttpResponse | None:
        """Answer the /.auth/* routes; None for every other path (and for all of them when off)."""
        if not self.enabled or not url.path.startswith(AUTH_PREFIX):
            return None
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        if method not in ("GET", "POST"):
            return func.HttpResponse(status_code=405)
        if url.path.rstrip("/") == f"{AUTH_PREFIX}login/{PROVIDER}":
            return self._login(query)
        if url.path.rstrip("/") == f"{AUTH_PREFIX}logout":
            return _redirect(_local_path(query.get("post_logout_redirect_uri")),
                             f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0")
        return func.HttpResponse(f"{url.path} is not emulated locally; sign in with "
                                 f"{AUTH_PREFIX}login/{PROVIDER}?user=<name>&redirect=<path>", status_code=404)

    def _login(self, query: dict[str, str]) -> func.HttpResponse:
        if "user" not in query:
            return _sign_in_form(_local_path(query.get("redirect") or query.get("post_login_redirect_uri")))
        user = query.get("user", "").strip()
        try:
            token = self.signer.issue(user)
        except ValueError as bad:
            return func.HttpResponse(f"cannot sign in: {bad}. Use {AUTH_PREFIX}login/{PROVIDER}?user=<name>"
                                     "&redirect=<path>", status_code=400, mimetype="text/plain")
        target = _local_path(query.get("redirect") or query.get("post_login_redirect_uri"))
        return _redirect(target, f"{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_SECONDS}")


def _sign_in_form(target: str) -> func.HttpResponse:
    """The local stand-in for the provider's sign-in page: who are you? (no password: local only)."""
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in (local)</title></head>'
            f'<body><h1>Sign in (local App Service authentication)</h1>'
            f'<form method="get" action="{AUTH_PREFIX}login/{PROVIDER}">'
            f'<label for="user">Principal name</label> <input id="user" name="user" required '
            f'placeholder="alice@contoso.com"><input type="hidden" name="post_login_redirect_uri" '
            f'value="{escape(target, quote=True)}"> <button type="submit">Sign in</button></form></body></html>')
    return func.HttpResponse(body, status_code=200, mimetype="text/html",
                             headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                      "Content-Security-Policy": "default-src 'none'; form-action 'self'"})


def _local_path(target: str | None) -> str:
    """Only paths on this host: an open redirect would let any link sign people in and send them elsewhere."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or any(
            ch in target for ch in "\r\n"):
        return "/"
    return target


def _redirect(location: str, cookie: str) -> func.HttpResponse:
    return func.HttpResponse(status_code=302, headers={"Location": location, "Set-Cookie": cookie,
                                                       "Cache-Control": "no-store"})
