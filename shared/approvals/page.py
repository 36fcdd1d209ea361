"""The approval page: what is being approved, the evidence, and Approve / Reject while the request is open.

One self-contained HTML document (inline CSS and a few lines of JS, both under a per-response CSP nonce);
every value goes through Jinja's autoescaping. The buttons POST to the approve/reject routes on the same origin;
the browser adds the approver's App Service authentication session itself. The page never holds a function key:
the approval routes need none (a signed-in person is what they require).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from shared.approvals.identity import Principal
from shared.approvals.models import MAX_COMMENT, ApprovalError, ApprovalRequest
from shared.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "approval.html.j2"
STATUS_LABELS = {"pending": "Awaiting decision", "granted": "Approved", "rejected": "Rejected", "expired": "Expired"}
_PASS_MARKS = ("pass", "✓", "ok")
_FAIL_MARKS = ("fail", "✗", "✘")


@dataclass(frozen=True)
class Page:
    body: str
    headers: dict[str, str]


@dataclass(frozen=True)
class GateLine:
    text: str
    kind: str  # pass | fail | info


def wants_html(accept: str | None, format_param: str | None) -> bool:
    """`?format=html|json` decides; otherwise HTML only when the Accept header ranks it above JSON."""
    if format_param:
        return format_param.lower() == "html"
    ranks: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranks[media.lower()] = max(quality, ranks.get(media.lower(), 0.0))
    html = ranks.get("text/html", 0.0)
    return html > 0 and html > ranks.get("application/json", 0.0)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def remaining(expires_at: datetime, now: datetime) -> str:
    seconds = int((expires_at - now).total_seconds())
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m left" if hours else f"{minutes}m {secs:02d}s left"


def gate_lines(lines: list[str]) -> list[GateLine]:
    found = []
    for line in lines:
        lowered = line.strip().lower()
        kind = "fail" if any(mark in lowered for mark in _FAIL_MARKS) else (
            "pass" if lowered.startswith(_PASS_MARKS) or "passed" in lowered or "✓" in lowered else "info")
        found.append(GateLine(line, kind))
    return found


def report_link(uri: str) -> str | None:
    """Only http(s) report URIs become links (never javascript: or data:); others are shown as text."""
    return uri if urlsplit(uri).scheme in ("http", "https") else None


def render_approval_page(request: ApprovalRequest, *, now: datetime, page_path: str, viewer: Principal | None,
                         error: ApprovalError | None = None) -> Page:
    nonce = secrets.token_urlsafe(18)
    base = page_path.rstrip("/")
    is_open = request.is_open(now)
    status = request.status if request.status != "pending" or is_open else "expired"
    body = render_template(TEMPLATES, TEMPLATE,
        r=request, status=status, status_label=STATUS_LABELS[status], is_open=is_open, now=now,
        remaining=remaining(request.expires_at, now), fmt=format_time,
        metrics=sorted(request.metrics.items()), gate=gate_lines(request.gate_summary),
        report_href=report_link(request.report_uri), viewer=viewer,
        viewer_may_decide=viewer is not None and request.is_approver(viewer.name),
        approve_url=f"{base}/approve", reject_url=f"{base}/reject",
        max_comment=MAX_COMMENT, error=error, nonce=nonce,
    )
    return Page(body, page_headers(nonce))


def page_headers(nonce: str) -> dict[str, str]:
    # The page has an Approve button and the approver's session: no framing (clickjacking), no caching, no Referer
    # to the report link, and only our own nonce'd style and script.
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
            "form-action 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
