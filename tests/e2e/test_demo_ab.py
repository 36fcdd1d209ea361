"""`make demo`'s A/B path on a stack of its own (free ports, the scripted LLM): the first version of math_coding
serves, the demo edits a prompt in its copy of flows/, the changed flow is approved and deployed beside the first at
the configured split, traffic and feedback go through the router, and the A/B report's verdict is printed; then one
post-production evaluation judges that traffic and the production report is downloaded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from localstack import demo, demo_ab, demo_production
from localstack.llm.scripted import ScriptedLLM
from localstack.stack import ROOT, LocalStack
from shared.adapters.azure_blob import AzureBlobStore
from shared.audit import EventJournal
from tests.e2e.conftest import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_ab.copy_flows(ROOT / "flows", tmp_path_factory.mktemp("demo-flows") / "flows")


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory, grader: ScriptedLLM, flows: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("demo-stack"), grader, GENAIOPS_FLOWS_DIR=str(flows),
                       LOCAL_ROUTER_SEED="20261125") as started:  # the new version draws 7 of 20
        yield started


def test_the_demo_ships_a_changed_prompt_beside_the_first_version_and_prints_the_ab_verdict(
        demo_stack: LocalStack, flows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_ab.host_reads(demo_stack.state_dir / "local.settings.json", flows)
    storage = BlobServiceClient.from_connection_string(demo_stack.storage_connection_string)
    first = demo.upload(storage, ROOT / "flows" / demo_ab.USE_CASE / demo_ab.QUESTIONS)
    second_round = demo_ab.SecondRound(storage, flows, [first], demo.DONE)
    timelines = demo.follow_uploads(demo_stack, EventJournal(AzureBlobStore(storage)), [first], second_round)

    # The first version took all traffic; then the demo's change ran as a second upload, followed to its end.
    first_verified = next(e for e in timelines[first] if e.type == "deployment.verified")
    assert first_verified.payload.traffic == {first_verified.payload.deployment: 100}
    assert second_round.correlation_id in timelines
    second = [e.type for e in timelines[second_round.correlation_id]]
    assert {"gate.passed", "approval.requested", "approval.granted", "smoke.passed"} <= set(second), second
    runs = next(e for e in timelines[second_round.correlation_id] if e.type == "evaluation.completed").payload.runs
    assert len(runs) == 1  # only the combination that serves is re-tested
    assert demo.ab_round_served(second_round, timelines)

    # The second version serves at the use case's deployment.traffic split, the first keeps its share.
    verified = next(e for e in timelines[second_round.correlation_id] if e.type == "deployment.verified").payload
    endpoint = demo_ab.endpoint_of(storage, flows)
    assert endpoint is not None
    new, current = endpoint.configured
    assert (new, current) == (30, 70)
    assert verified.traffic == {first_verified.payload.deployment: current, verified.deployment: new}
    assert verified.flow_version != first_verified.payload.flow_version

    # Only the copy was edited.
    assert demo_ab.AFTER in (flows / demo_ab.USE_CASE / demo_ab.PROMPT).read_text()
    assert demo_ab.BEFORE in (ROOT / "flows" / demo_ab.USE_CASE / demo_ab.PROMPT).read_text()

    outcome = demo_ab.compare(demo_stack, storage, flows, tmp_path / "reports")
    assert outcome is not None
    assert len(outcome.answers) == len(demo_ab.questions(flows))
    assert {a.deployment for a in outcome.answers} == set(verified.traffic)  # both versions answered users
    assert all(a.right for a in outcome.answers)  # the scripted model calculates right
    assert {a.feedback_status for a in outcome.answers} == {201}
    stats = {s.deployment: s for s in outcome.report.deployments}
    assert sum(stats[name].ratings for name in verified.traffic) == len(outcome.answers)
    assert [(c.deployment, c.baseline) for c in outcome.report.comparisons] == [
        (verified.deployment, first_verified.payload.deployment)]
    printed = capsys.readouterr().out
    shown = [line for line in printed.splitlines() if line.startswith("A/B verdict: ")]
    assert shown == [f"A/B verdict: {demo_ab.verdicts(outcome.report)[0]}"], shown
    # Every answer was right and rated 5 on both sides: the same mean rating, nothing significant.
    assert shown[0].startswith(f"A/B verdict: {verified.deployment} vs {first_verified.payload.deployment} at α = "
                               "0.05: rating "), shown
    assert "(not significant, p = 1)" in shown[0], shown
    assert f"file://{outcome.page}" in printed
    assert "Verdict" in outcome.page.read_text()
    stored = json.loads(storage.get_blob_client(
        "reports", f"{demo_ab.USE_CASE}/deployments/{endpoint.name}/ab_report.json").download_blob().readall())
    assert stored["baseline"] == first_verified.payload.deployment

    assert_production_evaluation(demo_stack, storage, set(verified.traffic), tmp_path / "reports", capsys)


def assert_production_evaluation(stack: LocalStack, storage: BlobServiceClient, deployments: set[str], out: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The demo's last step: the traffic it just sent is judged (the scripted model grades right answers 5)."""
    judged = demo_production.evaluate(stack, storage, EventJournal(AzureBlobStore(storage)), out)
    assert judged is not None
    scores = {d.deployment: d for d in judged.evaluated.payload.deployments}
    assert set(scores) <= deployments
    assert sum(d.lines for d in scores.values()) > 0
    assert all(d.metrics["judge.score"] == 5.0 for d in scores.values()), scores
    assert judged.page.is_relative_to(out / demo_ab.USE_CASE / "production")
    assert "judge.score" in judged.page.read_text()
    printed = capsys.readouterr().out
    assert "production.evaluated" in printed
    assert f"production report: file://{judged.page}" in printed
