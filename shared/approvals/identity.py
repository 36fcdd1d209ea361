"""Who is asking, from App Service authentication ("Easy Auth") headers.

In Azure, Easy Auth validates the sign-in, strips any X-MS-* headers the client sent, and injects
`X-MS-CLIENT-PRINCIPAL-NAME` plus `X-MS-CLIENT-PRINCIPAL`, base64 JSON of the form
`{"auth_typ": "aad", "name_typ": "<claim type>", "role_typ": "<claim type>", "claims": [{"typ": .., "val": ..}]}`.
On the local stack the local host does the same (localstack/host/app_service_auth.py). The app trusts those
headers only together: both must be present, the principal must decode, and the name header must be one of the
principal's name claims — anything else is treated as no identity at all (401).

Those headers mean something only when App Service authentication is on: with it off the platform neither
injects nor strips them, so any caller could send them. The platform says it is on with the app setting
`WEBSITE_AUTH_ENABLED=True` (and names the provider in `WEBSITE_AUTH_DEFAULT_PROVIDER`); the local host sets the
same when it emulates it. `IdentitySource` is that decision: without it nobody is signed in, whatever the headers.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from shared.approvals.models import IdentitySourceMissing, NotAuthenticated, same_principal

TRUST_SETTING = "WEBSITE_AUTH_ENABLED"  # set by App Service when authentication is on ("True")
PROVIDER_SETTING = "WEBSITE_AUTH_DEFAULT_PROVIDER"  # e.g. "AzureActiveDirectory"; the local host says "local"
ENABLE_HINT = ("enable App Service authentication on the Function App — Terraform: approver_auth_enabled = true "
               "with approver_auth_client_id (see infra/README.md, 'Approver sign-in'); the platform then sets "
               "WEBSITE_AUTH_ENABLED=True. The local host emulates it unless WEBSITE_AUTH_ENABLED is false")
_PROVIDER_PATHS = {"azureactivedirectory": "aad", "microsoftaccount": "microsoftaccount"}
NAME_HEADER = "x-ms-client-principal-name"
PRINCIPAL_HEADER = "x-ms-client-principal"
MAX_PRINCIPAL_BYTES = 64 * 1024
# Besides the principal's own name_typ, the claims Entra ID and other providers put the sign-in name in
# (Entra's name_typ is often the e-mail claim while the name header carries preferred_username).
NAME_CLAIM_TYPES = frozenset({
    "name", "preferred_username", "upn", "email", "emails",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
})


@dataclass(frozen=True)
class Principal:
    name: str
    provider: str


class _Claim(BaseModel):
    model_config = ConfigDict(extra="ignore")
    typ: str
    val: str

    @field_validator("val", mode="before")
    @classmethod
    def _scalar(cls, value: object) -> str:
        return value if isinstance(value, str) else json.dumps(value)


class _ClientPrincipal(BaseModel):
    model_config = ConfigDict(extra="ignore")
    auth_typ: str
    name_typ: str | None = None
    claims: list[_Claim]

    def names(self) -> list[str]:
        types = NAME_CLAIM_TYPES | ({self.name_typ} if self.name_typ else set())
        return [claim.val for claim in self.claims if claim.typ in types and claim.val.strip()]


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _decode(encoded: str) -> _ClientPrincipal:
    if len(encoded) > MAX_PRINCIPAL_BYTES:
        raise NotAuthenticated("malformed identity: the client principal is too large")
    padded = encoded.strip() + "=" * (-len(encoded.strip()) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in padded or "_" in padded) else None, validate=True)
        return _ClientPrincipal.model_validate(json.loads(raw))
    except (binascii.Error, ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise NotAuthenticated("malformed identity: the client principal does not decode") from None


def principal_from_headers(headers: Mapping[str, str]) -> Principal:
    """The signed-in principal, or NotAuthenticated saying whether it is missing, malformed or tampered."""
    found = _lowered(headers)
    name = found.get(NAME_HEADER, "").strip()
    encoded = found.get(PRINCIPAL_HEADER, "").strip()
    if not name and not encoded:
        raise NotAuthenticated("not signed in: approving needs an approver signed in through App Service "
                               "authentication")
    if not name or not encoded:
        raise NotAuthenticated("malformed identity: the principal name and client principal must come together")
    principal = _decode(encoded)
    names = principal.names()
    if not names:
        raise NotAuthenticated("malformed identity: the client principal has no name claim")
    if not any(same_principal(name, claimed) for claimed in names):
        raise NotAuthenticated("tampered identity: the principal name does not match the signed-in principal")
    return Principal(name=name, provider=principal.auth_typ)


@dataclass(frozen=True)
class IdentitySource:
    """Whether a signed-in person can be known at all here, and where they sign in."""

    enabled: bool
    provider: str = "aad"  # the /.auth/login/<provider> path segment

    @classmethod
    def from_platform(cls, enabled: bool, provider: str | None) -> IdentitySource:
        name = (provider or "").strip()
        return cls(enabled, _PROVIDER_PATHS.get(name.lower(), name.lower()) if name else "aad")

    def require(self) -> None:
        if not self.enabled:
            raise IdentitySourceMissing("no trusted identity source: App Service authentication is off, so "
                                        f"nobody can be signed in as an approver; {ENABLE_HINT}")

    def principal(self, headers: Mapping[str, str]) -> Principal:
        """The signed-in person — only when the platform vouches for the headers."""
        self.require()
        return principal_from_headers(headers)

    def viewer(self, headers: Mapping[str, str]) -> Principal | None:
        """For pages that only show who is signed in."""
        try:
            return self.principal(headers)
        except (NotAuthenticated, IdentitySourceMissing):
            return None

    def sign_in_url(self, return_to: str) -> str:
        """App Service's sign-in, coming back to `return_to` (a path on this app)."""
        return f"/.auth/login/{self.provider}?post_login_redirect_uri={quote(return_to, safe='/')}"


def is_cross_site(headers: Mapping[str, str], allowed_origins: set[str]) -> bool:
    """A state-changing request sent by another site's page (CSRF) — the browser sends the approver's session
    cookie along, so the identity alone does not prove the approver meant it. Requests without browser headers
    (scripts, pipelines) are not cross-site."""
    found = _lowered(headers)
    if found.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = found.get("origin")
    if not origin:
        return False
    if origin == "null":
        return True
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}".lower() not in allowed_origins


def request_origins(url: str, headers: Mapping[str, str], public_base_url: str) -> set[str]:
    """The origins this app answers on: the configured public URL and the Host the request came to."""
    found = _lowered(headers)
    parts = urlsplit(url)
    scheme = found.get("x-forwarded-proto", parts.scheme or "https").split(",")[0].strip()
    origins = {public_base_url.rstrip("/").lower()}
    if host := found.get("host") or parts.netloc:
        origins.add(f"{scheme}://{host}".lower())
    return origins
