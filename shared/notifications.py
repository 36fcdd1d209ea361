"""Telling people: a structured log line, or a webhook (Teams, Slack, a mail relay) — one channel for every kind of
notification (an approval waiting, a deployment degraded). Builders elsewhere turn what happened into a
`Notification` (shared/approvals/notification.py, shared/monitoring/alerts.py); the notifier only delivers it.

A notification is a courtesy, not part of what it reports: a webhook that is down is retried a few times, logged,
and then left — the approval request or the rollback stands without it (`send` makes that hold for any notifier).
Webhook URLs usually embed a token, so only their host is ever logged.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import SecretStr

log = logging.getLogger("genaiops.notify")


@dataclass(frozen=True)
class Notification:
    """`kind` (e.g. approval.requested) and `subject` (what it is about, e.g. the approval id) name it in logs;
    title, text and link are what a person reads; `facts` are the log line's structured fields."""

    kind: str
    subject: str
    title: str
    text: str
    link: str
    facts: Mapping[str, object] = field(default_factory=dict)

    def as_json(self) -> dict[str, str]:
        return {"title": self.title, "text": self.text, "link": self.link}


class Notifier(Protocol):
    def notify(self, notification: Notification) -> None:
        """Best effort: must not raise for delivery problems."""
        ...


def send(notifier: Notifier, notification: Notification) -> None:
    """Deliver, never fail the caller: a notifier that raises anyway is logged, and what it reports stands."""
    try:
        notifier.notify(notification)
    except Exception:
        log.exception("%s %s: notifier failed; carrying on without the notification", notification.kind,
                      notification.subject)


def notifier_for(webhook_url: SecretStr | None) -> Notifier:
    """The webhook when one is configured (APPROVAL_WEBHOOK_URL, for every kind), else the log."""
    return WebhookNotifier(webhook_url.get_secret_value()) if webhook_url is not None else LogNotifier()


class LogNotifier:
    """The default without a webhook: one structured line an operator (or a log alert) can pick up."""

    def notify(self, notification: Notification) -> None:
        log.info("%s %s", notification.kind, json.dumps(
            {**notification.facts, "title": notification.title, "link": notification.link}, default=str))


class _Retryable(Exception):
    pass


class WebhookNotifier:
    """POST {title, text, link} as JSON; up to `retries` more attempts on timeouts, connection errors, 429 and
    5xx, with a short growing pause. Other 4xx answers are final: the payload or URL will not get better."""

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 3, backoff_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the notification webhook must be an http(s) URL")
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

    def notify(self, notification: Notification) -> None:
        body = json.dumps(notification.as_json()).encode()
        about = f"{notification.kind} {notification.subject}"
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            try:
                self._post(body)
            except _Retryable as problem:
                if attempt == attempts:
                    log.warning("%s: webhook %s failed %d times (%s); carrying on without it",
                                about, self.target, attempts, problem)
                    return
                self._sleep(self._backoff * 2 ** (attempt - 1))
            except urllib.error.HTTPError as refused:
                log.warning("%s: webhook %s refused the notification with HTTP %d; not retrying",
                            about, self.target, refused.code)
                return
            else:
                log.info("%s: webhook %s notified", about, self.target)
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
