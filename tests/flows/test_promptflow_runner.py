"""The in-process promptflow runner, for real: promptflow executes the flows, the LLM is a scripted
OpenAI-compatible server on loopback (the only fake: it stands in for Azure OpenAI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localstack.llm.scripted import ScriptedLLM, scripted_llm
from shared.adapters.promptflow_runner import PromptflowRunner
from shared.experiments.runner import ConnectionSpec, ExecutionLimits, RunSpec

pytestmark = pytest.mark.timeout(120)
FLOWS = Path(__file__).resolve().parents[1] / "fixtures" / "flows"

DELAY = 0.05


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with scripted_llm(delay_seconds=DELAY) as server:
        yield server


@pytest.fixture(scope="module")
def runner() -> PromptflowRunner:
    return PromptflowRunner()


def connection(llm: ScriptedLLM) -> ConnectionSpec:
    return ConnectionSpec(name="local_llm", type="OpenAIConnection", values={"base_url": llm.base_url},
                          secrets={"api_key": "not-a-real-key"})


def calc_spec(run_id: str, count: int, flow: str = "calc") -> RunSpec:
    rows = [{"question": f"What is {i} + {i}?"} for i in range(count)]
    return RunSpec(run_id=run_id, kind="standard", flow_dir=FLOWS / flow, flow=flow, dataset="sums", rows=rows)


def test_standard_runs_share_one_concurrency_budget(runner: PromptflowRunner, llm: ScriptedLLM) -> None:
    llm.reset_stats()
    llm.delay_seconds = 0.5  # long enough that 6 lines are in flight at once even on a busy machine
    try:
        results = runner.run_all([calc_spec("a", 12), calc_spec("b", 12)], [connection(llm)],
                                 ExecutionLimits(concurrency=6))
    finally:
        llm.delay_seconds = DELAY
    assert [r.status for r in results] == ["completed", "completed"]
    assert [line.outputs["answer"] for line in results[0].lines] == [str(2 * i) for i in range(12)]
    assert llm.calls == 24
    assert llm.peak_concurrency == 6  # lines of both runs were in flight together, never more than the limit
    assert all(line.tokens > 0 for line in results[1].lines)  # token use is measured per line


def test_evaluation_run_collects_aggregated_metrics_and_failed_lines(runner: PromptflowRunner) -> None:
    rows = [{"groundtruth": "4", "prediction": "4"}, {"groundtruth": "5", "prediction": "6"},
            {"groundtruth": "1", "prediction": "boom"}, {"groundtruth": "2", "prediction": "2"}]
    [result] = runner.run_all([RunSpec(run_id="e", kind="evaluation", flow_dir=FLOWS / "accuracy", flow="accuracy",
                                       dataset="sums", rows=rows, evaluator="acc", parent_run_id="a")],
                              [], ExecutionLimits(concurrency=2))
    assert result.failed_lines == 1
    assert "cannot grade an explosion" in result.lines[2].error
    # Aggregation runs over the successful lines only: 2 correct of 3.
    assert result.metrics == {"accuracy": pytest.approx(0.6667), "graded": 3.0}


def test_a_flow_that_cannot_load_is_a_failed_run_not_a_crash(runner: PromptflowRunner, llm: ScriptedLLM) -> None:
    results = runner.run_all([calc_spec("ok", 2), calc_spec("missing", 2, flow="no_such_flow")], [connection(llm)],
                             ExecutionLimits())
    assert [r.status for r in results] == ["completed", "failed"]
    assert "no flow.dag.yaml" in results[1].error


def test_llm_errors_become_line_errors_without_leaking_the_key(runner: PromptflowRunner) -> None:
    broken = ConnectionSpec(name="local_llm", type="OpenAIConnection", values={"base_url": "http://127.0.0.1:9/v1"},
                            secrets={"api_key": "sk-secret-value"})
    [result] = runner.run_all([calc_spec("down", 2)], [broken], ExecutionLimits(line_timeout_seconds=30))
    assert result.failed_lines == 2
    assert "sk-secret-value" not in result.model_dump_json()


def test_flex_flows_run_too(runner: PromptflowRunner) -> None:
    rows = [{"text": "hello"}, {"text": "fail"}, {"text": "azure"}]
    [result] = runner.run_all([RunSpec(run_id="flex", kind="standard", flow_dir=FLOWS / "flex_upper", flow="flex",
                                       dataset="words", rows=rows)], [], ExecutionLimits())
    assert result.status == "completed"
    assert [line.outputs for line in result.lines] == [{"loud": "HELLO"}, None, {"loud": "AZURE"}]
    assert "refusing to shout" in result.lines[1].error
