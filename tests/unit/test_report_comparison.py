"""The report as a place to compare combinations: the expected answer in results.csv, every line side by side with
per-line pass/fail and disagreement, the gate verdict as tables, each variant's prompt diffed against the default,
and what a real flow folder records for them."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from shared.experiments.config import load_experiment
from shared.experiments.gate import Baseline, GateConfig, Threshold, evaluate_gate
from shared.experiments.provenance import evaluator_mappings, variant_definitions
from shared.experiments.results import ExperimentResult, LineResult, RunResult
from shared.experiments.scoring import build_grid, mean_scores
from shared.reports import csv_reports, html_report
from shared.reports.gate_table import gate_view
from shared.reports.html_report import render_summary_html
from shared.reports.lines import judge, line_table
from shared.reports.prompts import node_variants
from tests.unit.test_reports import EXPECTED, LINES, START, _rows, build_result, expected_best

pytestmark = pytest.mark.timeout(60)


def test_results_csv_has_the_expected_answer_the_evaluator_used() -> None:
    rows = _rows(csv_reports.results_csv(build_result()).decode())
    header = list(rows[0])
    column = "expected.eval_quality.groundtruth"
    assert header.index("input.context") < header.index(column) < header.index("output.answer")
    assert "expected.eval_quality.prediction" not in header  # fed from the run's output, not the dataset
    # Every row, also lines a combination failed: the other combinations' runs were scored against the same row.
    assert {row[column] for row in rows} == {EXPECTED}
    # No mapping recorded (a result from before they were): no expected columns, nothing guessed.
    unmapped = csv_reports.results_csv(build_result(lines=2).model_copy(update={"evaluator_mappings": []}))
    assert not any(name.startswith("expected.") for name in _rows(unmapped.decode())[0])


@pytest.mark.parametrize(("name", "value", "verdict"), [
    ("correct", True, True), ("correct", False, False), ("exact_match", 1, True), ("exact_match", 0, False),
    ("partial_match", 0.0, False), ("similarity", 0.63, None), ("rating", 4, None), ("error_rate", 0, None),
    ("label", "yes", None), ("score", float("nan"), None),
])
def test_a_line_score_passes_fails_or_says_nothing(name: str, value: object, verdict: bool | None) -> None:
    assert judge(name, value) is verdict


def test_line_table_puts_every_combination_beside_each_line() -> None:
    result = build_result()
    grid = build_grid(result)
    table = line_table(result, grid, "golden")
    assert (table.id, table.expected) == ("lines-1", True)
    assert [line.line_number for line in table.lines] == list(range(LINES))
    assert [c.id for c in table.combinations] == ["C1", "C2", "C3", "C4"]
    by_run = {run.run_id: {line.line_number: line for line in run.lines} for run in result.standard_runs}
    correct = {(e.parent_run_id, line.line_number): line.outputs["correct"]
               for e in result.evaluation_runs for line in e.lines if line.outputs}
    for line in table.lines:
        assert line.expected == [("groundtruth", EXPECTED)]
        assert f"golden question {line.line_number}, with a comma" in line.input_summary
        for index, cell in enumerate(line.cells):
            source = by_run[f"run-{index}-golden"][line.line_number]
            if source.failed:
                assert (cell.status, cell.error) == ("error", source.error)
                continue
            assert cell.status == ("pass" if correct[(f"run-{index}-golden", line.line_number)] else "fail")
            assert dict(cell.outputs)["answer"] == source.outputs["answer"]
            assert {score.name for score in cell.scores} == {"score", "correct"}
        assert line.passed == sum(cell.status == "pass" for cell in line.cells)
        assert line.failed == any(cell.status in ("fail", "error") for cell in line.cells)
    failed_run = line_table(result, grid, "adversarial")
    assert all(line.cells[2].status == "error" for line in failed_run.lines)  # C3's run failed on every line
    cut = line_table(result, grid, "golden", max_cells=40)  # 10 lines × 4 combinations
    assert ([line.line_number for line in cut.lines], cut.total) == (list(range(10)), LINES)
    assert table.total == LINES


def test_combinations_disagree_when_their_results_differ() -> None:
    def disagree(*answers: tuple[str | None, bool | None]) -> bool:
        """One line, one combination per (output, correct): None output = an error, None correct = not scored."""
        runs, scores = [], []
        for index, (output, correct) in enumerate(answers):
            line = LineResult(line_number=0, inputs={"q": "?"}, duration_ms=1.0,
                              outputs=None if output is None else {"answer": output},
                              error="timed out" if output is None else None)
            runs.append(RunResult(run_id=f"r{index}", kind="standard", flow="f", dataset="d",
                                  variant={"n": f"v{index}"}, status="completed", lines=[line], started_at=START,
                                  duration_seconds=1.0))
            if correct is not None:
                score = LineResult(line_number=0, inputs={}, outputs={"correct": correct}, duration_ms=1.0)
                scores.append(RunResult(run_id=f"e{index}", kind="evaluation", flow="e", evaluator="e", dataset="d",
                                        parent_run_id=f"r{index}", status="completed", started_at=START,
                                        duration_seconds=1.0, lines=[score]))
        result = ExperimentResult(experiment_id="x", use_case="u", environment="dev", status="completed",
                                  standard_runs=runs, evaluation_runs=scores, started_at=START, finished_at=START)
        return line_table(result, build_grid(result), "d").lines[0].disagree

    assert not disagree(("yes", True), ("Yes, it is.", True))  # worded differently, judged the same
    assert disagree(("yes", True), ("no", False))
    assert disagree(("yes", True), (None, None))  # an error disagrees with a pass
    assert not disagree(("yes", None), ("yes", None))  # nothing judged: the outputs decide
    assert disagree(("yes", None), ("no", None))


def test_gate_verdict_is_a_table_with_every_combination_against_each_threshold() -> None:
    result = build_result()
    thresholds = [Threshold(metric="accuracy", min=0.8), Threshold(metric="mean_error", max=0.35),
                  Threshold(metric="accuracy", max_drop=0.01)]
    verdict = evaluate_gate(result, GateConfig(primary_metric="accuracy", thresholds=thresholds),
                            Baseline(flow_version="4", metrics={"accuracy": 0.9}))
    grid = build_grid(result)
    view = gate_view({"gate": verdict.model_dump(mode="json")}, grid)
    assert view is not None
    assert [(c.metric, c.rule, c.passed) for c in view.checks] == [
        ("accuracy", ">= 0.8", True), ("mean_error", "<= 0.35", True),
        ("accuracy", "drop <= 0.01 vs deployed", False)]
    assert view.columns == ["accuracy >= 0.8", "mean_error <= 0.35"]  # the relative one needs the deployed value
    assert view.best is not None
    assert view.best.label == expected_best(result, "accuracy", "higher")
    assert [row.winner for row in view.rows].count(True) == 1
    for row in view.rows:
        values = [mean_scores(grid, metric).get(row.combination.id) for metric in grid.metrics
                  if metric.name in ("accuracy", "mean_error")]
        assert [cell.value for cell in row.cells] == values
        for cell, limit, higher in zip(row.cells, (0.8, 0.35), (True, False), strict=True):
            assert cell.passed is (None if cell.value is None else cell.value >= limit if higher
                                   else cell.value <= limit)
    page = render_summary_html(result, {"gate": verdict.model_dump(mode="json"), "registered": "v5"})
    assert 'id="gate"' in page
    assert page.index('id="gate"') < page.index('id="verdict"')
    assert '"checks"' not in page  # read as tables, not dumped as JSON
    assert "registered" in page  # the other extras are still listed
    assert gate_view({"gate": {"passed": False, "reason": "odd"}}, grid) is None  # not a verdict: left as written


def test_each_variant_is_shown_with_a_diff_against_the_default() -> None:
    result = build_result(lines=2)
    nodes = {node.node: node for node in node_variants(result)}
    classify = nodes["classify"]
    assert [view.definition.variant for view in classify.variants] == ["zero_shot", "few_shot"]  # default first
    default, few = classify.variants
    assert default.diff == []
    assert "system:\nClassify." in default.text
    assert ("add", "+Example: spam -> yes") in [(line.kind, line.text) for line in few.diff]
    assert ("remove", "-source: zero.jinja2") in [(line.kind, line.text) for line in few.diff]
    detailed = next(view for view in nodes["summarize"].variants if view.definition.variant == "detailed")
    changed = [line.text for line in detailed.diff if line.kind in ("add", "remove")]
    assert changed == ["-  limit: 80", "+  limit: 400"]  # same code, one input changed
    assert [view.used for view in nodes["summarize"].variants] == [True, True, False]  # bullet was not run
    page = render_summary_html(result)
    anchors = set(re.findall(r'id="(variant-[^"]+)"', page))
    links = set(re.findall(r'href="#(variant-[^"]+)"', page))
    assert links
    assert links <= anchors  # every combination chip leads to its variant's prompt


def test_a_flow_records_its_variants_and_evaluator_mappings() -> None:
    use_case = Path(__file__).parents[2] / "flows" / "named_entity_recognition"
    flow = use_case / "flows" / "standard"
    definitions = variant_definitions(flow)
    assert [(d.node, d.variant, d.default) for d in definitions] == [
        ("cleanse", "variant_0", True), ("cleanse", "variant_1", False),
        ("extract", "variant_0", True), ("extract", "variant_1", False)]
    extract = {d.variant: d for d in definitions if d.node == "extract"}
    assert extract["variant_0"].text == (flow / "extract_list.jinja2").read_text(encoding="utf-8")
    assert extract["variant_1"].source == "extract_examples.jinja2"
    assert extract["variant_1"].type == "llm"
    assert [d.inputs["strip_punctuation"] for d in definitions if d.node == "cleanse"] == [True, False]
    assert variant_definitions(use_case / "flows" / "evaluation") == []  # no variants, nothing recorded

    mappings = evaluator_mappings(load_experiment(use_case, "dev"), ["ner_test"])
    assert [(m.evaluator, m.dataset, m.expected) for m in mappings] == [("ner_match", "ner_test", ["ground_truth"])]


def test_a_cut_line_table_says_so_on_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_report, "line_table", functools.partial(line_table, max_cells=40))
    page = render_summary_html(build_result())
    assert page.count("The first 10\n      lines are shown") == 2  # both datasets
    assert page.count('<tbody class="line"') == 20
