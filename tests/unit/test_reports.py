"""Reports: every line in results.csv, metrics per run × evaluator, a safe and self-contained summary.html."""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
from datetime import UTC, datetime, timedelta
from statistics import mean

import pytest

from shared.blob_layout import REPORTS
from shared.experiments.results import (
    EvaluatorMapping,
    ExperimentResult,
    LineResult,
    RunResult,
    VariantDefinition,
)
from shared.redaction import REDACTED
from shared.reports import (
    ReportLocations,
    better_direction,
    read_experiment_json,
    write_experiment_reports,
)
from shared.reports.charts import nice_ticks, wrap_label
from shared.reports.html_report import render_summary_html
from tests.fakes.memory import MemoryBlobStore

pytestmark = pytest.mark.timeout(60)

MALICIOUS = "<script>alert(1)</script>"
SECRET = "sk-live-9f8e7d6c5b4a"
EXPECTED = "yes"
LINES = 25
DATASETS = ("golden", "adversarial")
COMBINATIONS = [
    ({"summarize": "concise", "classify": "zero_shot"}, {"temperature": 0.2}),
    ({"summarize": "concise", "classify": "few_shot"}, {"temperature": 0.2}),
    ({"summarize": "detailed", "classify": "zero_shot"}, {"temperature": 0.7}),
    ({"summarize": "detailed", "classify": "few_shot"}, {"temperature": 0.7}),
]
QUALITY = (0.55, 0.7, 0.92, 0.8)          # the third combination is best, but its adversarial run fails
FAILED_RUN = (2, "adversarial")
FAILED_LINES = {(0, "golden"): (3, 17), (3, "adversarial"): (0,)}
START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _line(rng: random.Random, number: int, quality: float, failed: bool, dataset: str) -> LineResult:
    inputs = {"question": f"{dataset} question {number}, with a comma", "api_key": SECRET,
              "context": {"doc": number, "tags": ["a", "b"]}}
    if failed:
        return LineResult(line_number=number, inputs=inputs, error=f"model said {MALICIOUS} on line {number}",
                          duration_ms=12.0)
    answer = "yes" if rng.random() < quality else "no"
    outputs = {"answer": answer, "note": MALICIOUS if number == 1 else f"line {number}\nsecond line \"quoted\""}
    return LineResult(line_number=number, inputs=inputs, outputs=outputs, duration_ms=100 + rng.random() * 400,
                      tokens=200 + number)


def build_result(lines: int = LINES) -> ExperimentResult:
    """4 combinations × 2 datasets × `lines` lines, one evaluator, a few failed lines and one failed run."""
    rng = random.Random(7)
    standard, evaluation = [], []
    for index, (variant, hyper) in enumerate(COMBINATIONS):
        for dataset in DATASETS:
            run_id = f"run-{index}-{dataset}"
            failed_run = (index, dataset) == FAILED_RUN
            failed = FAILED_LINES.get((index, dataset), ())
            run_lines = [_line(rng, n, QUALITY[index], failed_run or n in failed, dataset) for n in range(lines)]
            standard.append(RunResult(
                run_id=run_id, kind="standard", flow="flows/standard", dataset=dataset, variant=variant,
                hyperparameters=hyper, status="failed" if failed_run else "completed",
                error=f"rate limited (api_key={SECRET})" if failed_run else None, lines=run_lines,
                started_at=START + timedelta(minutes=index), duration_seconds=30 + index * 11 + len(dataset),
            ))
            if failed_run:
                continue
            scored = []
            for line in reversed(run_lines):  # reversed: the join must go by line_number, not by position
                if line.failed:
                    scored.append(LineResult(line_number=line.line_number, inputs={}, error="nothing to score",
                                             duration_ms=1.0))
                    continue
                score = round(QUALITY[index] - (0.1 if dataset == "adversarial" else 0) + rng.uniform(-.1, .1), 4)
                scored.append(LineResult(line_number=line.line_number, duration_ms=5.0,
                                         inputs={"groundtruth": EXPECTED, "prediction": line.outputs["answer"]},
                                         outputs={"score": score, "correct": line.outputs["answer"] == "yes"}))
            good = [line.outputs for line in scored if line.outputs]
            evaluation.append(RunResult(
                run_id=f"eval-{index}-{dataset}", kind="evaluation", flow="flows/eval_quality",
                evaluator="eval_quality", dataset=dataset, variant=variant, hyperparameters=hyper,
                parent_run_id=run_id, status="completed", lines=scored,
                metrics={
                    "accuracy": mean(1.0 if out["correct"] else 0.0 for out in good),
                    "mean_score": mean(out["score"] for out in good),
                    "mean_error": mean(1 - out["score"] for out in good),
                },
                started_at=START + timedelta(minutes=10 + index), duration_seconds=4.5,
            ))
    return ExperimentResult(
        experiment_id="exp-20260302-0930", use_case="web_classification", environment="dev", status="failed",
        failures=[f"run run-2-adversarial failed: rate limited {MALICIOUS}"],
        standard_runs=standard, evaluation_runs=evaluation, started_at=START,
        finished_at=START + timedelta(minutes=14, seconds=5),
        decisions={"combinations": 4, "datasets": list(DATASETS), "note": MALICIOUS},
        evaluator_mappings=[EvaluatorMapping(evaluator="eval_quality", dataset=dataset, mappings={
            "groundtruth": "${data.answer}", "prediction": "${run.outputs.answer}"}) for dataset in DATASETS],
        variant_definitions=[
            VariantDefinition(node="classify", variant="few_shot", default=False, type="llm", source="few.jinja2",
                              text="system:\nClassify.\nExample: spam -> yes\nuser:\n{{question}}",
                              inputs={"temperature": 0, "api_key": SECRET}),
            VariantDefinition(node="classify", variant="zero_shot", default=True, type="llm", source="zero.jinja2",
                              text="system:\nClassify.\nuser:\n{{question}}", inputs={"temperature": 0}),
            VariantDefinition(node="summarize", variant="concise", default=True, type="python", source="s.py",
                              text=f"def summarize(text):\n    return text[:80]  # {MALICIOUS}\n",
                              inputs={"limit": 80}),
            VariantDefinition(node="summarize", variant="detailed", default=False, type="python", source="s.py",
                              text=f"def summarize(text):\n    return text[:80]  # {MALICIOUS}\n",
                              inputs={"limit": 400}),
            VariantDefinition(node="summarize", variant="bullet", default=False, type="python", source="s.py",
                              text="def summarize(text):\n    return '- ' + text\n", inputs={"limit": 80}),
        ],
    )


def expected_best(result: ExperimentResult, metric: str, direction: str) -> str:
    """Independent of the report code: mean over both datasets, completed runs scored on both only."""
    standard = {run.run_id: run for run in result.standard_runs if run.status == "completed"}
    values: dict[str, dict[str, float]] = {}
    for evaluation in result.evaluation_runs:
        parent = standard.get(evaluation.parent_run_id or "")
        if parent is not None and evaluation.status == "completed":
            values.setdefault(parent.label, {})[parent.dataset] = evaluation.metrics[metric]
    means = {label: mean(by.values()) for label, by in values.items() if set(by) == set(DATASETS)}
    return (max if direction == "higher" else min)(means, key=means.__getitem__)


def _rows(data: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data)))


Written = tuple[ExperimentResult, MemoryBlobStore, ReportLocations]


@pytest.fixture(scope="module")
def written() -> Written:
    result = build_result()
    blobs = MemoryBlobStore()
    where = write_experiment_reports(result, blobs, extra={"gate": {"passed": False, "reason": MALICIOUS}})
    return result, blobs, where


def test_locations_and_content_types(written: Written) -> None:
    _, blobs, where = written
    prefix = "web_classification/exp-20260302-0930/"
    assert where.summary_html == prefix + "summary.html"
    assert set(blobs.names(REPORTS)) == {
        where.summary_html, where.results_csv, where.metrics_csv, where.experiment_json}
    assert blobs.containers() == {REPORTS}
    assert blobs.content_type(REPORTS, where.summary_html).startswith("text/html")
    assert blobs.content_type(REPORTS, where.results_csv).startswith("text/csv")


def test_results_csv_has_every_line_of_every_run(written: Written) -> None:
    result, blobs, where = written
    rows = _rows(blobs.text(REPORTS, where.results_csv))
    assert len(rows) == len(result.standard_runs) * LINES == 200  # well past any 100-row page
    assert {(row["run_id"], int(row["line_number"])) for row in rows} == {
        (run.run_id, n) for run in result.standard_runs for n in range(LINES)}
    header = list(rows[0])
    assert header[:7] == ["experiment_id", "run_id", "dataset", "variant", "variant.classify", "variant.summarize",
                          "hyperparameters"]
    assert header[-3:] == ["error", "duration_ms", "tokens"]
    assert {"input.question", "input.context", "output.answer", "output.note",
            "score.eval_quality.score", "score.eval_quality.correct"} <= set(header)
    first = rows[0]
    assert first["variant"] == "classify=zero_shot, summarize=concise, temperature=0.2"
    assert json.loads(first["hyperparameters"]) == {"temperature": 0.2}
    assert json.loads(first["input.context"]) == {"doc": 0, "tags": ["a", "b"]}
    assert first["input.question"] == "golden question 0, with a comma"  # quoted, not split
    assert rows[2]["output.note"] == 'line 2\nsecond line "quoted"'


def test_results_csv_joins_scores_to_the_right_lines(written: Written) -> None:
    result, blobs, where = written
    expected = {
        (evaluation.parent_run_id, line.line_number): line.outputs
        for evaluation in result.evaluation_runs for line in evaluation.lines
    }
    checked = 0
    for row in _rows(blobs.text(REPORTS, where.results_csv)):
        outputs = expected.get((row["run_id"], int(row["line_number"])))
        if outputs is None:  # a failed line or a run nobody scored
            assert row["score.eval_quality.score"] == ""
            continue
        assert float(row["score.eval_quality.score"]) == outputs["score"]
        assert row["score.eval_quality.correct"] == ("true" if outputs["correct"] else "false")
        assert (row["output.answer"] == "yes") == outputs["correct"]
        checked += 1
    assert checked == 7 * LINES - 3


def test_results_csv_redacts_secrets(written: Written) -> None:
    _, blobs, where = written
    text = blobs.text(REPORTS, where.results_csv)
    assert SECRET not in text
    assert {row["input.api_key"] for row in _rows(text)} == {REDACTED}
    for name in (where.metrics_csv, where.summary_html, where.experiment_json):
        assert SECRET not in blobs.text(REPORTS, name)


def test_metrics_csv_has_one_row_per_run_and_evaluator(written: Written) -> None:
    result, blobs, where = written
    rows = _rows(blobs.text(REPORTS, where.metrics_csv))
    assert len(rows) == 8  # 7 scored runs × 1 evaluator + the failed run, which nobody scored
    by_run = {row["run_id"]: row for row in rows}
    for evaluation in result.evaluation_runs:
        row = by_run[evaluation.parent_run_id]
        assert row["evaluator"] == "eval_quality"
        assert row["evaluation_run_id"] == evaluation.run_id
        for name, value in evaluation.metrics.items():
            assert float(row[f"metric.{name}"]) == pytest.approx(value)
    failed = by_run["run-2-adversarial"]
    assert (failed["status"], failed["evaluator"], failed["metric.accuracy"]) == ("failed", "", "")
    assert (failed["lines"], failed["failed_lines"]) == (str(LINES), str(LINES))
    golden = by_run["run-0-golden"]
    assert golden["failed_lines"] == "2"
    assert golden["variant.summarize"] == "concise"
    assert int(golden["tokens"]) == sum(line.tokens for line in result.standard_runs[0].lines)


def test_better_direction() -> None:
    assert better_direction("accuracy") == "higher"
    assert better_direction("f1_score") == "higher"
    for name in ("mean_error", "Loss", "latency_ms", "edit_distance"):
        assert better_direction(name) == "lower"


def test_summary_names_the_best_combination_per_metric(written: Written) -> None:
    result, blobs, where = written
    page = blobs.text(REPORTS, where.summary_html)
    for metric, direction in (("accuracy", "higher"), ("mean_score", "higher"), ("mean_error", "lower")):
        best = expected_best(result, metric, direction)
        match = re.search(rf'data-metric="{metric}" data-best="([^"]*)"', page)
        assert match, metric
        assert html.unescape(match.group(1)) == best
    # the strongest combination failed on one dataset, so it must not be crowned
    assert expected_best(result, "accuracy", "higher") != result.standard_runs[4].label


def test_summary_is_self_contained(written: Written) -> None:
    _, blobs, where = written
    page = blobs.text(REPORTS, where.summary_html).lower()
    for forbidden in ("<script src", "<link", "url(http", "@import", "src=\"http", "<img", "<iframe"):
        assert forbidden not in page
    assert page.count("<svg") == 5  # three metrics, durations, tokens


def test_summary_escapes_untrusted_text(written: Written) -> None:
    _, blobs, where = written
    page = blobs.text(REPORTS, where.summary_html)
    assert MALICIOUS not in page
    escaped = html.escape(MALICIOUS, quote=False)
    assert page.count(escaped) >= 4  # failure banner, failed lines, the example output, decisions
    assert "<script>" in page  # the page's own sorting script, and only that one
    assert page.count("<script") == 1


def test_summary_lists_failures_and_every_failed_line(written: Written) -> None:
    result, blobs, where = written
    page = blobs.text(REPORTS, where.summary_html)
    assert 'id="failures"' in page
    assert page.index('id="failures"') < page.index('id="verdict"')
    failed_total = sum(run.failed_lines for run in result.standard_runs)
    assert failed_total == LINES + 3
    table = page[page.index('id="failed-lines-table"'):]
    assert table.count("<tr>") - 1 == failed_total  # header row + one per failed line
    assert "rate limited (api_key=***" in page  # the failed run, its error redacted


def test_summary_without_failures_says_so() -> None:
    result = build_result(lines=4)
    clean = result.model_copy(update={
        "status": "completed", "failures": [],
        "standard_runs": [run.model_copy(update={"status": "completed", "error": None, "lines": [
            line.model_copy(update={"error": None, "outputs": {"answer": "yes"}}) for line in run.lines]})
            for run in result.standard_runs],
    })
    page = render_summary_html(clean)
    assert "No failed lines." in page
    assert 'id="failures"' not in page


def test_summary_without_evaluations_still_renders() -> None:
    result = build_result(lines=3).model_copy(update={"evaluation_runs": []})
    page = render_summary_html(result)
    assert "no best combination" in page
    assert page.count("<svg") == 2


def test_experiment_json_round_trips_with_extra(written: Written) -> None:
    result, blobs, where = written
    again, extra = read_experiment_json(blobs.read(REPORTS, where.experiment_json)[0])
    assert extra == {"gate": {"passed": False, "reason": MALICIOUS}}
    assert again.experiment_id == result.experiment_id
    assert len(again.standard_runs) == 8
    assert again.standard_runs[0].lines[0].inputs["api_key"] == REDACTED
    assert again.evaluation_runs[0].metrics == result.evaluation_runs[0].metrics


def test_chart_helpers() -> None:
    assert nice_ticks(0.0, 0.93) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(-3.0, 4.0)[0] <= -3.0
    lines = wrap_label("C1 · classify=zero_shot, summarize=concise, temperature=0.2, top_p=0.9, seed=1, n=2")
    assert len(lines) == 3
    assert lines[-1].endswith("…")
    assert all(len(line) <= 30 for line in wrap_label("x" * 70, max_lines=5))


def test_an_experiment_that_ran_nothing_still_gets_reports() -> None:
    empty = ExperimentResult(experiment_id="exp/../x", use_case="uc", environment="dev", status="failed",
                             failures=["no datasets found"], standard_runs=[], started_at=START, finished_at=START)
    blobs = MemoryBlobStore()
    where = write_experiment_reports(empty, blobs)
    assert where.prefix == "uc/exp_.._x/"  # ids become safe path segments
    assert _rows(blobs.text(REPORTS, where.results_csv)) == []
    assert "no datasets found" in blobs.text(REPORTS, where.summary_html)

