"""Telling approvers that a decision is waiting: a structured log line, or a webhook (Teams, Slack, a mail relay).

A notification is a courtesy, not part of the decision: a webhook that is down is retried a few times, logged,
and then left — the approval request stands and the page works without it. Webhook URLs usually embed a
token, so only their host is ever logged.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from shared.approvals.models import ApprovalRequest

log = logging.getLogger("genaiops.approvals.notify")


@dataclass(frozen=True)
class Notification:
    title: str
    text: str
    link: str

    def as_json(self) -> dict[str, str]:
        return {"title": self.title, "text": self.text, "link": self.link}


def notification_for(request: ApprovalRequest, approval_url: str) -> Notification:
    lines = [f"{request.use_case}: flow {request.flow_name} version {request.flow_version} waits for approval."]
    if request.metrics:
        lines.append("Metrics: " + ", ".join(f"{name} {value:.4g}" for name, value in sorted(request.metrics.items())))
    lines.extend(f"Gate: {line}" for line in request.gate_summary)
    lines.append(f"Approvers: {', '.join(request.approvers)}")
    lines.append(f"Expires: {request.expires_at.isoformat(timespec='seconds')}")
    return Notification(title=f"Approval needed: {request.use_case} {request.flow_name} v{request.flow_version}",
                        text="\n".join(lines), link=approval_url)


class Notifier(Protocol):
    def notify(self, request: ApprovalRequest, approval_url: str) -> None:
        """Best effort: must not raise for delivery problems."""
        ...


class LogNotifier:
    """The default without a webhook: one structured line an operator (or a log alert) can pick up."""

    def notify(self, request: ApprovalRequest, approval_url: str) -> None:
        log.info("approval requested %s", json.dumps({
            "approval_id": request.approval_id, "use_case": request.use_case, "flow": request.flow_name,
            "version": request.flow_version, "approvers": request.approvers,
            "expires_at": request.expires_at.isoformat(), "link": approval_url,
        }))


class _Retryable(Exception):
    pass


class WebhookNotifier:
    """POST {title, text, link} as JSON; up to `retries` more attempts on timeouts, connection errors, 429 and
    5xx, with a short growing pause. Other 4xx answers are final: the payload or URL will not get better."""

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 3, backoff_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the approval webhook must be an http(s) URL")
        self._url = url
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff_seconds
        self._sleep = sleep

    @property
    def target(self) -> str:
        """What may be logged about the URL: scheme and host, never the path or query (they carry tokens)."""
        parts = urlsplit(self._url)
        return f"{parts.scheme}://{parts.hostname}"

    def notify(self, request: ApprovalRequest, approval_url: str) -> None:
        body = json.dumps(notification_for(request, approval_url).as_json()).encode()
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self._post(body)
            except _Retryable as problem:
                if attempt == attempts:
                    log.warning("approval %s: webhook %s failed %d times (%s); carrying on without it",
                                request.approval_id, self.target, attempts, problem)
                    return
                self._sleep(self._backoff * 2 ** (attempt - 1))
            except urllib.error.HTTPError as refused:
                log.warning("approval %s: webhook %s refused the notification with HTTP %d; not retrying",
                            request.approval_id, self.target, refused.code)
                return
            else:
                log.info("approval %s: webhook %s notified", request.approval_id, self.target)
                return

    def _post(self, body: bytes) -> None:
        post = urllib.request.Request(self._url, data=body, method="POST",
                                      headers={"Content-Type": "application/json", "User-Agent": "genaiops-functions"})
        try:
            with urllib.request.urlopen(post, timeout=self._timeout) as response:  # scheme checked in __init__
                response.read()
        except urllib.error.HTTPError as answer:
            if answer.code == 429 or answer.code >= 500:
                raise _Retryable(f"HTTP {answer.code}") from None
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError) as unreachable:
            # The reason text can echo the URL; keep only its type.
            raise _Retryable(type(getattr(unreachable, "reason", unreachable)).__name__) from None
