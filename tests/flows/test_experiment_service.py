"""A whole experiment of the shipped math_coding use case: real promptflow runs of every variant combination
over both datasets, evaluation, reports in Azurite — with metric values checked against the known data.
The LLM is a scripted OpenAI-compatible server whose answers depend on the prompt variant."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

from localstack.llm.scripted import Messages, ScriptedLLM, arithmetic_responder, scripted_llm
from shared.adapters.blob_experiment_store import BlobExperimentStore
from shared.adapters.promptflow_runner import PromptflowRunner
from shared.blob_layout import REPORTS
from shared.events import (
    EvaluationCompleted,
    Event,
    ExperimentCompleted,
    ExperimentFailed,
    ExperimentRequested,
    GatePassed,
)
from shared.experiments.remote_runner import RemoteRunStatus
from shared.experiments.results import RunResult
from shared.experiments.runner import ConnectionSpec, ExecutionLimits, RunSpec
from shared.ports import BlobStore
from shared.registry.blob_registry import BlobRegistry
from shared.services.experiment_items import REMOTE_CHECK_INTERVAL
from shared.services.experiments import ExperimentWorkspace
from shared.services.gate import judge_experiment
from shared.services.registration import register_chosen_flow
from tests.bus_driver import QueueBus, dependencies, drive, outcomes
from tests.fakes.memory import ManualClock

pytestmark = [pytest.mark.azurite, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "flows"


def tutor_responder(messages: Messages) -> str:
    """Direct prompt: the number. Step-by-step prompt: working first, answer last — so parsing the *first*
    number (extract_answer variant_1) picks an operand, not the result."""
    answer = arithmetic_responder(messages)
    system = str(messages[0].get("content", ""))
    if "step by step" in system:
        question = str(messages[-1].get("content", ""))
        operands = re.findall(r"-?\d+", question)
        return f"First take {operands[0]}, then apply the operation with {operands[1]}. Answer: {answer}"
    return answer


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with scripted_llm(tutor_responder) as server:
        yield server


def execute(request: ExperimentRequested, blob_store: BlobStore, clock: ManualClock,
            space: ExperimentWorkspace) -> list[Event]:
    """The experiment through the message bus: plan, every work item, both stages; the outcome events."""
    deps = dependencies(blob_store, clock, space, BlobRegistry(blob_store, clock), QueueBus())
    return outcomes(drive(deps, request))


def workspace(llm: ScriptedLLM, tmp_path: Path, blob_store: BlobStore) -> ExperimentWorkspace:
    env = {"AOAI_BASE_URL": llm.base_url, "AOAI_API_KEY": "not-a-real-key"}
    return ExperimentWorkspace(flows_root=FLOWS, work_root=tmp_path, runner=PromptflowRunner(), secrets_env=env,
                               store=BlobExperimentStore(blob_store), local_stack=False)


def expected_first_number_accuracy(dataset: Path) -> float:
    rows = [json.loads(line) for line in dataset.read_text().splitlines() if line.strip()]
    hits = sum(re.findall(r"-?\d+", row["question"])[0] == row["answer"] for row in rows)
    return round(hits / len(rows), 4)


def test_every_combination_runs_on_every_dataset_with_known_metrics(llm: ScriptedLLM, blob_store: BlobStore,
                                                                   clock: ManualClock, tmp_path: Path) -> None:
    request = ExperimentRequested.create({"use_case": "math_coding", "environment": "local"}, correlation_id="t")
    events = execute(request, blob_store, clock, workspace(llm, tmp_path, blob_store))

    completed = next(e for e in events if isinstance(e, ExperimentCompleted))
    assert [e.type for e in events] == ["experiment.completed", "evaluation.completed"]
    runs = completed.payload.runs
    assert len(runs) == 4 * 2  # 2 x 2 variants (full cross-product) x 2 datasets
    assert {tuple(sorted(r.variant.items())) for r in runs} == {
        (("extract_answer", e), ("solve", s)) for e in ("variant_0", "variant_1") for s in ("variant_0", "variant_1")}
    for run in runs:
        dataset_file = FLOWS / "math_coding" / "data" / f"{run.dataset}.jsonl"
        stepwise_first = run.variant == {"solve": "variant_1", "extract_answer": "variant_1"}
        expected = expected_first_number_accuracy(dataset_file) if stepwise_first else 1.0
        assert run.metrics["accuracy"] == pytest.approx(expected), run.run_id
        assert run.failed_lines == 0

    prefix = f"math_coding/{completed.payload.experiment_id}/"
    results = list(csv.DictReader(io.StringIO(blob_store.read(REPORTS, prefix + "results.csv")[0].decode())))
    assert len(results) == 4 * (24 + 20)  # every line of every run, no page cap
    summary = blob_store.read(REPORTS, prefix + "summary.html")[0].decode()
    assert "math_coding" in summary
    assert "not-a-real-key" not in summary


def test_bad_configuration_fails_the_experiment_with_a_report(llm: ScriptedLLM, blob_store: BlobStore,
                                                              clock: ManualClock, tmp_path: Path) -> None:
    space = workspace(llm, tmp_path, blob_store)
    space = dataclasses.replace(space, secrets_env={})  # no secrets set
    request = ExperimentRequested.create({"use_case": "math_coding", "environment": "local"}, correlation_id="t2")
    [failed] = execute(request, blob_store, clock, space)
    assert isinstance(failed, ExperimentFailed)
    assert "AOAI_BASE_URL" in failed.payload.reasons[0]
    report = json.loads(blob_store.read(REPORTS, f"math_coding/{failed.payload.experiment_id}/experiment.json")[0])
    assert report["status"] == "failed"


def test_failed_lines_above_the_limit_fail_the_experiment(blob_store: BlobStore, clock: ManualClock,
                                                           tmp_path: Path) -> None:
    def flaky(messages: Messages) -> str:
        if "13" in str(messages[-1].get("content")):
            raise RuntimeError("model overloaded")
        return arithmetic_responder(messages)

    with scripted_llm(flaky) as server:
        request = ExperimentRequested.create({"use_case": "math_coding", "environment": "local",
                                              "datasets": ["math_test"]}, correlation_id="t3")
        events = execute(request, blob_store, clock, workspace(server, tmp_path, blob_store))
    assert [e.type for e in events] == ["experiment.failed"]
    assert any("lines failed" in reason for reason in events[0].payload.reasons)


def ner_responder(dataset: Path) -> Callable[[Messages], str]:
    """Knows the labelled entities of every sentence; the few-shot prompt's answers end with a full stop, so only
    the cleanse variant that strips punctuation gets them exactly right."""
    truth = {row["text"]: row["results"] for row in map(json.loads, dataset.read_text().splitlines())}

    def respond(messages: Messages) -> str:
        text = str(messages[-1].get("content", "")).split("Text:", 1)[1].strip()
        few_shot = len(messages) > 2
        return truth[text] + ("." if few_shot else "")

    return respond


def test_named_entity_recognition_metrics_match_the_labels(blob_store: BlobStore, clock: ManualClock,
                                                           tmp_path: Path) -> None:
    dataset = FLOWS / "named_entity_recognition" / "data" / "ner_test.jsonl"
    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    with scripted_llm(ner_responder(dataset)) as server:
        request = ExperimentRequested.create({"use_case": "named_entity_recognition", "environment": "local",
                                              "datasets": ["ner_test"]}, correlation_id="ner")
        events = execute(request, blob_store, clock, workspace(server, tmp_path, blob_store))
    completed = next(e for e in events if isinstance(e, ExperimentCompleted))
    metrics = {(run.variant["extract"], run.variant["cleanse"]): run.metrics for run in completed.payload.runs}
    # Few-shot answers keep a trailing "." on the last entity unless cleanse strips punctuation.
    partial = round(sum((len(r["results"].split(", ")) - 1) / len(r["results"].split(", ")) for r in rows)
                    / len(rows), 4)
    assert metrics[("variant_0", "variant_0")] == {"exact_match_rate": 1.0, "partial_match_rate": 1.0}
    assert metrics[("variant_0", "variant_1")]["exact_match_rate"] == 1.0  # no "." to keep
    assert metrics[("variant_1", "variant_0")]["exact_match_rate"] == 1.0  # cleanse v0 strips the "."
    assert metrics[("variant_1", "variant_1")] == {"exact_match_rate": 0.0, "partial_match_rate": partial}


class ManagedIdentity:
    """azure-identity at its boundary: the token the Function's managed identity would get for Azure OpenAI."""

    TOKEN = "token-of-the-function-identity"

    def __init__(self) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        self.scopes += scopes
        return AccessToken(self.TOKEN, int(time.time()) + 3600)


@pytest.fixture(autouse=True)
def managed_identity(monkeypatch: pytest.MonkeyPatch) -> ManagedIdentity:
    """The shipped dev/prod connection authenticates with Entra ID (auth_mode: meid_token): promptflow asks
    DefaultAzureCredential for a Cognitive Services token, answered here."""
    from promptflow._core import token_provider

    identity = ManagedIdentity()
    monkeypatch.setattr(token_provider, "get_default_azure_credential", lambda: identity)
    monkeypatch.setattr(token_provider.AzureTokenProvider, "_instance", None)  # a process-wide singleton
    return identity


def judged(server: ScriptedLLM, blob_store: BlobStore, clock: ManualClock, tmp_path: Path) -> tuple[Event, dict]:
    """Run math_coding in the dev environment (its Azure OpenAI connection pointed at the scripted server, with the
    managed identity's token), then the gate; return the verdict event and decision.json."""
    request = ExperimentRequested.create({"use_case": "math_coding", "environment": "dev",
                                          "datasets": ["math_test"]}, correlation_id=f"gate-{tmp_path.name}")
    env = {"AOAI_API_BASE": server.base_url.removesuffix("/v1")}  # no key: Entra ID
    space = ExperimentWorkspace(FLOWS, tmp_path, PromptflowRunner(), secrets_env=env,
                                store=BlobExperimentStore(blob_store), local_stack=False)
    evaluated = next(e for e in execute(request, blob_store, clock, space)
                     if isinstance(e, EvaluationCompleted))
    [verdict] = judge_experiment(evaluated, blob_store, space)
    prefix = f"math_coding/{evaluated.payload.experiment_id}/"
    return verdict, json.loads(blob_store.read(REPORTS, prefix + "decision.json")[0])


def test_gate_passes_the_best_combination(llm: ScriptedLLM, blob_store: BlobStore, clock: ManualClock,
                                          tmp_path: Path, managed_identity: ManagedIdentity) -> None:
    llm.credentials.clear()
    verdict, decision = judged(llm, blob_store, clock, tmp_path)
    # The Azure OpenAI connection used the Function's identity: a bearer token for Cognitive Services, no key.
    assert llm.credentials == {f"bearer {ManagedIdentity.TOKEN}"}
    assert set(managed_identity.scopes) == {"https://cognitiveservices.azure.com/.default"}
    assert verdict.type == "gate.passed", verdict.payload.reasons
    # Three combinations score 1.0; the tie goes to the all-defaults baseline, listed first.
    assert verdict.payload.best_variant == {"solve": "variant_0", "extract_answer": "variant_0"}
    assert decision["gate"]["checks"][1]["note"] == "skipped: no deployed version yet"


def test_gate_fails_below_the_threshold_with_reasons_in_the_report(blob_store: BlobStore, clock: ManualClock,
                                                                   tmp_path: Path) -> None:
    with scripted_llm(lambda messages: "0") as always_zero:
        verdict, decision = judged(always_zero, blob_store, clock, tmp_path)
    assert verdict.type == "gate.failed"
    assert verdict.payload.reasons[0].startswith("accuracy >= 0.8 failed: actual 0")
    assert decision["gate"]["passed"] is False


def test_passing_gate_registers_the_chosen_flow_once(llm: ScriptedLLM, blob_store: BlobStore, clock: ManualClock,
                                                     tmp_path: Path) -> None:
    verdict, _ = judged(llm, blob_store, clock, tmp_path)
    assert isinstance(verdict, GatePassed)
    registry = BlobRegistry(blob_store, clock)
    store = BlobExperimentStore(blob_store)
    first = register_chosen_flow(verdict, store, registry, flows_root=FLOWS, work_root=tmp_path, local=False)[0]
    again = register_chosen_flow(verdict, store, registry, flows_root=FLOWS, work_root=tmp_path, local=False)[0]
    assert first.payload.created
    assert not again.payload.created
    assert first.payload.version == again.payload.version
    stored = registry.latest_flow(first.payload.name)
    assert stored is not None
    assert stored.properties["metric.math_accuracy.accuracy"] == "1"
    assert json.loads(stored.properties["variant"]) == {"extract_answer": "variant_0", "solve": "variant_0"}
    assert "data.math_test" in stored.properties


class LocalRunAsRemote:
    """Azure ML at the runner port (it cannot run here): 'running' for the first checks, then the same run done
    by the real local runner. The adapter itself is tested at the SDK boundary in tests/unit."""

    def __init__(self, runner: PromptflowRunner, checks_before_done: int) -> None:
        self.runner, self.checks_before_done = runner, checks_before_done
        self.submitted: dict[str, int] = {}
        self.checks: dict[str, int] = {}

    def submit(self, spec: RunSpec, connections: Sequence[ConnectionSpec], limits: ExecutionLimits) -> str:
        name = f"aml-{spec.run_id}"
        self.submitted[name] = self.submitted.get(name, 0) + 1
        self._connections, self._limits = connections, limits
        return name

    def status(self, run_name: str) -> RemoteRunStatus:
        self.checks[run_name] = self.checks.get(run_name, 0) + 1
        return RemoteRunStatus(state="running" if self.checks[run_name] <= self.checks_before_done else "completed")

    def collect(self, spec: RunSpec, run_name: str) -> RunResult:
        return self.runner.run_all([spec], self._connections, self._limits)[0]


def test_runs_on_azure_ml_are_checked_again_later_and_land_in_the_same_store(
        llm: ScriptedLLM, blob_store: BlobStore, clock: ManualClock, tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS / "math_coding", flows / "math_coding")
    config = flows / "math_coding" / "experiment.yaml"
    config.write_text(config.read_text().replace("  concurrency: 8\n", "  concurrency: 8\n  runner: azureml\n"))
    remote = LocalRunAsRemote(PromptflowRunner(), checks_before_done=2)
    space = dataclasses.replace(workspace(llm, tmp_path, blob_store), flows_root=flows, remote=remote)
    request = ExperimentRequested.create({"use_case": "math_coding", "environment": "local",
                                          "datasets": ["math_test"]}, correlation_id="aml")
    deps = dependencies(blob_store, clock, space, BlobRegistry(blob_store, clock), QueueBus())
    events = drive(deps, request)

    evaluated = next(e for e in events if isinstance(e, EvaluationCompleted))
    for run in evaluated.payload.runs:  # the same metrics as when the lines run on the Functions
        stepwise_first = run.variant == {"solve": "variant_1", "extract_answer": "variant_1"}
        expected = expected_first_number_accuracy(FLOWS / "math_coding" / "data" / "math_test.jsonl")
        assert run.metrics["accuracy"] == pytest.approx(expected if stepwise_first else 1.0), run.run_id
    # One Azure ML run per standard run and per evaluation; every look re-submits it (idempotent by run name:
    # the adapter returns the existing run) and asks its status: twice running, then completed.
    assert len(remote.submitted) == 4 + 4
    assert remote.submitted == remote.checks
    assert set(remote.checks.values()) == {3}
    rechecks = [e for e in events if e.type == "experiment.item_requested" and e.payload.part > 0]
    assert len(rechecks) == 2 * 8
    assert {e.payload.not_before for e in rechecks} == {clock.now() + REMOTE_CHECK_INTERVAL}
