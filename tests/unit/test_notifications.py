"""The notification channel (shared/notifications.py) every kind goes through: the log line by default, the webhook
against a real HTTP server on 127.0.0.1 (retries, refusals, an unreachable host, tokens never logged), and `send`,
which no notifier can make fail."""

from __future__ import annotations

import json
import logging

import pytest

from shared.notifications import LogNotifier, Notification, WebhookNotifier, notifier_for, send
from shared.settings import Settings
from tests.fakes.memory import RecordingNotifier
from tests.webhook import Webhook

NOTE = Notification(kind="deployment.degraded", subject="evt-1", title="Degraded: uc blue on ep (prod)",
                    text="uc: deployment blue broke its thresholds.", link="https://func/api/ab-report/uc/ep",
                    facts={"use_case": "uc", "breaches": ["error rate 35.0% (7/20) > 20.0%"]})


def test_the_webhook_gets_title_text_and_link() -> None:
    with Webhook([]) as hook:
        WebhookNotifier(hook.url).notify(NOTE)
    assert hook.received == [{"title": NOTE.title, "text": NOTE.text, "link": NOTE.link}]


def test_webhook_retries_server_errors_then_succeeds() -> None:
    pauses: list[float] = []
    with Webhook([500, 503, 429]) as hook:
        WebhookNotifier(hook.url, sleep=pauses.append).notify(NOTE)
    assert len(hook.received) == 4
    assert pauses == [0.5, 1.0, 2.0]


def test_a_failing_webhook_is_given_up_after_bounded_retries_and_its_token_never_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    with Webhook([500] * 10) as hook, caplog.at_level(logging.INFO, "genaiops"):
        WebhookNotifier(hook.url, sleep=lambda _: None).notify(NOTE)
    assert len(hook.received) == 4  # one try and three bounded retries
    assert "deployment.degraded evt-1: webhook http://127.0.0.1 failed 4 times" in caplog.text
    assert "secret-token" not in caplog.text


def test_webhook_does_not_retry_a_refusal() -> None:
    with Webhook([400]) as hook:
        WebhookNotifier(hook.url, sleep=lambda _: None).notify(NOTE)
    assert len(hook.received) == 1


def test_unreachable_webhook_is_retried_and_given_up() -> None:
    with Webhook([]) as hook:
        url = hook.url
    pauses: list[float] = []
    WebhookNotifier(url, timeout=1, sleep=pauses.append).notify(NOTE)
    assert len(pauses) == 3


def test_log_notifier_writes_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "genaiops.notify"):
        LogNotifier().notify(NOTE)
    [record] = [r for r in caplog.records if r.name == "genaiops.notify"]
    line = json.loads(record.getMessage().removeprefix("deployment.degraded "))
    assert line == {**NOTE.facts, "title": NOTE.title, "link": NOTE.link}


def test_send_survives_a_broken_notifier(caplog: pytest.LogCaptureFixture) -> None:
    broken = RecordingNotifier(fail=True)
    with caplog.at_level(logging.ERROR, "genaiops.notify"):
        send(broken, NOTE)  # does not raise
    assert broken.sent == [NOTE]
    assert "deployment.degraded evt-1: notifier failed" in caplog.text


def test_the_webhook_setting_chooses_the_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPROVAL_WEBHOOK_URL", "")
    assert isinstance(notifier_for(Settings().approval_webhook_url), LogNotifier)
    monkeypatch.setenv("APPROVAL_WEBHOOK_URL", "https://hooks.example/services/T0/B0/secret-token")
    notifier = notifier_for(Settings().approval_webhook_url)
    assert isinstance(notifier, WebhookNotifier)
    assert notifier.target == "https://hooks.example"
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("file:///etc/passwd")
