"""flow.registered through the bus: a new version asks the approvers; the version that already serves asks nobody
and says so (deployment.unchanged, which a pipeline waiting for its deployment takes as done)."""

from __future__ import annotations

import pytest

from shared.blob_layout import DEPLOYMENTS, deployed_state_name
from shared.events import Event, FlowRegistered
from shared.experiments.gate import Baseline
from tests.fakes.bus import Ports
from tests.unit.test_permanent_failures import deps  # noqa: F401 - the fixture: real handlers on in-memory storage

HASH = "sha256:" + "a" * 64


@pytest.fixture(autouse=True)
def approvers(monkeypatch: pytest.MonkeyPatch) -> None:
    """An app that may ask for approvals: approvers listed, App Service authentication on (set before `deps`)."""
    monkeypatch.setenv("APPROVERS", "alice@contoso.com")
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")


def registered(version: str, *, created: bool) -> FlowRegistered:
    return FlowRegistered.create({"use_case": "math_coding", "experiment_id": "e1", "name": "math-coding",
                                  "version": version, "content_hash": HASH, "variant": {"solve": "variant_0"},
                                  "metrics": {"accuracy": 0.9}, "created": created}, correlation_id="run-1")


def handle(event: Event, deps: Ports) -> list[Event]:  # noqa: F811 - the fixture's value
    return list(deps.handle(event).published)


def serving(deps: Ports, version: str) -> None:  # noqa: F811
    deps.blobs.write(DEPLOYMENTS, deployed_state_name("math_coding"),
                     Baseline(flow_version=version, metrics={"accuracy": 0.9}).model_dump_json().encode())


@pytest.mark.parametrize(("serves", "version", "created"), [(None, "1", True), ("1", "2", True), ("2", "2", True),
                                                             ("1", "2", False)])
def test_a_version_that_does_not_serve_yet_asks_the_approvers(deps: Ports, serves: str | None,  # noqa: F811
                                                              version: str, created: bool) -> None:
    if serves:
        serving(deps, serves)
    [asked] = handle(registered(version, created=created), deps)
    assert asked.type == "approval.requested"


def test_the_version_that_serves_already_asks_nobody_and_the_journal_says_why(
        deps: Ports) -> None:  # noqa: F811
    serving(deps, "2")
    [unchanged] = handle(registered("2", created=False), deps)
    assert unchanged.type == "deployment.unchanged"
    assert unchanged.payload.flow_version == "2"
    assert "is the version deployed now: nothing to approve or deploy" in unchanged.payload.reason
    assert not deps.blobs.list("approvals")  # no request was stored, nobody was notified
