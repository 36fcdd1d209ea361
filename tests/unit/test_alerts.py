"""deployment.degraded and production.degraded notify people through the approvals' channel: through the message
bus as the application builds it (tests/fakes/bus.py), with a recording notifier, a broken one and a real webhook
on 127.0.0.1. Once per event id, whatever the notifier does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.events import Event
from shared.events.monitoring import DeploymentDegraded, ProductionDegraded
from shared.notifications import WebhookNotifier
from shared.settings import Settings
from tests.fakes.bus import Ports, in_memory_ports
from tests.fakes.memory import ManualClock, RecordingNotifier
from tests.webhook import Webhook

END = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
BASE_URL = "https://func-genaiops.azurewebsites.net"


def degraded(rollback: str = "requested") -> DeploymentDegraded:
    event = DeploymentDegraded.create({
        "use_case": "math_coding", "endpoint": "math-coding-prod", "deployment": "v2", "environment": "prod",
        "breaches": ["error rate 35.0% (7/20) > 5.0%", "latency p95 1500 ms > 1000 ms"],
        "window": {"start": datetime(2026, 12, 2, 15, 15, tzinfo=UTC), "end": END, "requests": 20, "errors": 7,
                   "error_rate": 0.35, "latency_p50_ms": 420.0, "latency_p95_ms": 1500.0},
        "thresholds": {"min_requests": 20, "max_error_rate": 0.05, "latency_p95_ms": 1000},
        "traffic": {"v1": 70, "v2": 30}, "rollback": rollback}, correlation_id="monitor-math_coding-v2")
    return event.model_copy(update={"id": "degraded-1"})


def judged() -> ProductionDegraded:
    return ProductionDegraded.create({
        "use_case": "math_coding", "endpoint": "math-coding-prod", "deployment": "v2", "environment": "prod",
        "breaches": ["judge.score 2.5 < 4"], "lines": 12, "metrics": {"judge.score": 2.5},
        "thresholds": [{"metric": "judge.score", "min": 4.0}], "window_end": END,
        "report_uri": "reports/math_coding/production/20261202T153000Z/summary.html"},
        correlation_id="production-eval-math_coding")


@pytest.fixture
def ports(tmp_path: Path, clock: ManualClock) -> Ports:
    base = in_memory_ports(tmp_path, clock)
    settings = base.settings.model_copy(update={"public_base_url": BASE_URL})
    return replace(base, settings=settings, notifier=RecordingNotifier())


def sent(ports: Ports) -> RecordingNotifier:
    assert isinstance(ports.notifier, RecordingNotifier)
    return ports.notifier


def test_a_degraded_deployment_says_what_broke_and_links_the_ab_report(ports: Ports) -> None:
    result = ports.handle(degraded())
    assert (result.handler, result.published) == ("on_deployment_degraded", [])
    [note] = sent(ports).sent
    assert note.title == "Degraded: math_coding v2 on math-coding-prod (prod)"
    assert note.link == f"{BASE_URL}/api/ab-report/math_coding/math-coding-prod"
    assert note.text.splitlines() == [
        "math_coding: deployment v2 of endpoint math-coding-prod (prod) broke its monitoring thresholds.",
        "Broke: error rate 35.0% (7/20) > 5.0%",
        "Broke: latency p95 1500 ms > 1000 ms",
        "Window: 2026-12-02T15:15:00+00:00 to 2026-12-02T15:30:00+00:00: 20 requests, 7 errors (35.0%), "
        "latency p50 420 ms, latency p95 1500 ms",
        "Traffic when seen: v1 70%, v2 30%",
        "Traffic rolled back: its share goes back to v1 (a retire was requested).",
        f"A/B report: {note.link}",
    ]
    assert (note.kind, note.subject, note.facts["rollback"]) == ("deployment.degraded", "degraded-1", "requested")


@pytest.mark.parametrize(("rollback", "says"), [
    ("disabled", "Traffic not rolled back: auto_rollback is off"),
    ("impossible", "Traffic not rolled back: no other deployment"),
])
def test_a_degraded_deployment_says_when_traffic_was_not_rolled_back(ports: Ports, rollback: str, says: str) -> None:
    ports.handle(degraded(rollback))
    assert says in sent(ports).sent[0].text


@pytest.mark.parametrize(("blob_uri", "link"), [
    (None, "reports/math_coding/production/20261202T153000Z/summary.html"),
    ("https://stgenaiops.blob.core.windows.net/",
     "https://stgenaiops.blob.core.windows.net/reports/math_coding/production/20261202T153000Z/summary.html"),
])
def test_judged_degradation_links_the_production_report(ports: Ports, blob_uri: str | None, link: str) -> None:
    ports = replace(ports, settings=ports.settings.model_copy(update={"storage_blob_uri": blob_uri}))
    event = judged()
    assert ports.handle(event).handler == "on_production_degraded"
    [note] = sent(ports).sent
    assert (note.title, note.link, note.subject) == ("Judged degraded: math_coding v2 on math-coding-prod (prod)",
                                                     link, event.id)
    assert "Broke: judge.score 2.5 < 4" in note.text
    assert "Judged: 12 line(s) up to 2026-12-02T15:30:00+00:00; judge.score 2.5" in note.text
    assert "Traffic not rolled back" in note.text
    assert f"A/B report: {BASE_URL}/api/ab-report/math_coding/math-coding-prod" in note.text


@pytest.mark.parametrize("make", [degraded, judged])
def test_a_redelivered_event_notifies_no_second_time(ports: Ports, make: Callable[[], Event]) -> None:
    event = make()
    assert not ports.handle(event).replayed
    assert ports.handle(event).replayed  # same id: the bus's record answers
    assert len(sent(ports).sent) == 1


def test_a_broken_notifier_does_not_fail_the_event_nor_get_retried(ports: Ports) -> None:
    ports = replace(ports, notifier=RecordingNotifier(fail=True))
    first = ports.handle(degraded())
    assert (first.failure, first.replayed) == (None, False)  # handled: the broker does not deliver it again
    again = ports.handle(degraded(), delivery_count=2)  # ...and if it does, nobody is notified again
    assert again.replayed
    assert len(sent(ports).sent) == 1


def test_a_webhook_that_is_down_costs_its_retries_once(ports: Ports) -> None:
    with Webhook([503] * 10) as hook:
        ports = replace(ports, notifier=WebhookNotifier(hook.url, sleep=lambda _: None))
        assert ports.handle(degraded()).failure is None
        assert len(hook.received) == 4
        assert ports.handle(degraded(), delivery_count=2).replayed
        assert len(hook.received) == 4
    with Webhook([]) as hook:
        ports = replace(ports, notifier=WebhookNotifier(hook.url))
        ports.handle(judged())
    [message] = hook.received
    assert set(message) == {"title", "text", "link"}
    assert message["title"].startswith("Judged degraded: math_coding v2")
    assert message["link"] == "reports/math_coding/production/20261202T153000Z/summary.html"


def test_the_public_base_url_setting_makes_the_link(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WEBSITE_HOSTNAME", "func-x.azurewebsites.net")
    ports = replace(in_memory_ports(tmp_path), settings=Settings(), notifier=RecordingNotifier())
    ports.handle(degraded())
    assert sent(ports).sent[0].link == "https://func-x.azurewebsites.net/api/ab-report/math_coding/math-coding-prod"
