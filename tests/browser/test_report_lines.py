"""The report's line comparison in headless Chromium: the filters (failed only, combinations that disagree, text
search), sorting a line table and expanding a line, checked against what the result says — computed here
independently of the report code.

Each test injects a script after the page's own that drives the page like a reader (clicks, typing) and writes what
is then shown into a <pre id="probe">, read back from Chromium's --dump-dom.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from shared.experiments.gate import Baseline, GateConfig, Threshold, evaluate_gate
from shared.experiments.results import ExperimentResult
from shared.reports.html_report import render_summary_html
from tests.browser.chromium import MARKS, run_chromium
from tests.unit.test_reports import DATASETS, LINES, build_result

pytestmark = MARKS

# What the page shows: visible lines per table, the counter, and a line's cells as text.
PROBE = """
const visible = id => Array.from(document.querySelectorAll(`#${id} > tbody.line`)).filter(b => !b.hidden);
const report = extra => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify(Object.assign({
    count: document.getElementById("filter-count").textContent,
    shown: Object.fromEntries(["lines-1", "lines-2"].map(
      id => [id, visible(id).map(b => b.rows[0].cells[0].dataset.value)])),
  }, extra));
  document.body.appendChild(probe);
};
const tick = id => {
  const box = document.getElementById(id);
  box.checked = true;
  box.dispatchEvent(new Event("change"));
};
"""


def _result() -> ExperimentResult:
    return build_result()


def _probe(tmp_path: Path, actions: str) -> dict[str, Any]:
    result = _result()
    config = GateConfig(primary_metric="accuracy", thresholds=[Threshold(metric="accuracy", min=0.8)])
    gate = evaluate_gate(result, config, Baseline(flow_version="3", metrics={"accuracy": 0.7}))
    page = render_summary_html(result, {"gate": gate.model_dump(mode="json")})
    page = page.replace("</body>", f"<script>{PROBE}\n{actions}</script>\n</body>")
    path = tmp_path / "summary.html"
    path.write_text(page, encoding="utf-8")
    run = run_chromium(tmp_path, "--dump-dom", path.as_uri())
    match = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert match, run.stderr[-2000:]
    return json.loads(html.unescape(match.group(1)))


def _by_line(result: ExperimentResult, dataset: str) -> dict[int, list[tuple[str | None, Any, dict[str, Any]]]]:
    """line number -> one (error, outputs, scores) per combination that ran the dataset."""
    scores = {(e.parent_run_id, line.line_number): line.outputs or {}
              for e in result.evaluation_runs for line in e.lines}
    found: dict[int, list[tuple[str | None, Any, dict[str, Any]]]] = {}
    for run in result.standard_runs:
        if run.dataset == dataset:
            for line in run.lines:
                found.setdefault(line.line_number, []).append(
                    (line.error, line.outputs, scores.get((run.run_id, line.line_number), {})))
    return found


def _failed(result: ExperimentResult, dataset: str) -> list[str]:
    # The fixture's per-line checks: an error, or `correct` false (its `score` is a 0..1 grade with no verdict).
    return [str(n) for n, cells in sorted(_by_line(result, dataset).items())
            if any(error or scores.get("correct") is False for error, _, scores in cells)]


def _disagreeing(result: ExperimentResult, dataset: str) -> list[str]:
    # Every line the fixture scored has a `correct` verdict, so results (error / right / wrong) decide.
    return [str(n) for n, cells in sorted(_by_line(result, dataset).items())
            if len({"error" if error else scores["correct"] for error, _, scores in cells}) > 1]


def test_every_line_is_shown_until_a_filter_is_set(tmp_path: Path) -> None:
    shown = _probe(tmp_path, "report({});")
    assert shown["count"] == f"{2 * LINES} of {2 * LINES} lines"
    assert shown["shown"] == {f"lines-{i + 1}": [str(n) for n in range(LINES)] for i in range(len(DATASETS))}


def test_failed_only_shows_exactly_the_failed_lines(tmp_path: Path) -> None:
    shown = _probe(tmp_path, 'tick("filter-failed"); report({});')
    result = _result()
    expected = {f"lines-{i + 1}": _failed(result, dataset) for i, dataset in enumerate(DATASETS)}
    assert 0 < len(expected["lines-1"]) < LINES  # the filter has something to show and something to hide
    assert shown["shown"] == expected
    total = sum(len(lines) for lines in expected.values())
    assert shown["count"] == f"{total} of {2 * LINES} lines"


def test_disagreeing_combinations_and_text_search_combine(tmp_path: Path) -> None:
    result = _result()
    shown = _probe(tmp_path, 'tick("filter-disagree"); report({});')
    assert shown["shown"] == {f"lines-{i + 1}": _disagreeing(result, d) for i, d in enumerate(DATASETS)}
    assert shown["shown"]["lines-1"] != [str(n) for n in range(LINES)]

    typed = _probe(tmp_path, """
      const box = document.getElementById("filter-text");
      box.value = "QUESTION 7, with";  // case-insensitive; the comma keeps 17 out
      box.dispatchEvent(new Event("input"));
      report({});""")
    assert typed["shown"] == {"lines-1": ["7"], "lines-2": ["7"]}
    assert typed["count"] == f"2 of {2 * LINES} lines"


def test_sorting_moves_whole_lines_and_expanding_shows_one_whole(tmp_path: Path) -> None:
    shown = _probe(tmp_path, """
      const header = Array.from(document.querySelectorAll("#lines-1 thead th"))
        .find(th => th.textContent.startsWith("Passed"));
      header.click();
      const line = visible("lines-1")[0];
      line.rows[0].cells[1].click();
      const detail = line.rows[1];
      report({
        passed: visible("lines-1").map(b => Number(b.rows[0].cells[3].dataset.value)),
        rows: visible("lines-1").map(b => b.rows.length),
        sort: header.getAttribute("aria-sort"),
        expanded: line.querySelector("button.expand").getAttribute("aria-expanded"),
        hidden: detail.hidden,
        line: line.rows[0].cells[0].dataset.value,
        panes: Array.from(detail.querySelectorAll(".pane")).map(p => p.innerText),
        width: detail.getBoundingClientRect().width,
      });""")
    result = _result()
    passed = shown["passed"]
    assert shown["sort"] == "ascending"
    assert passed == sorted(passed)
    assert passed[0] < passed[-1]
    assert shown["rows"] == [2] * LINES  # every line kept its detail row through the sort

    assert (shown["expanded"], shown["hidden"]) == ("true", False)
    assert shown["width"] > 600  # the detail row is laid out, not just unhidden
    number = int(shown["line"])
    inputs, expected, *combinations = shown["panes"]
    assert f"golden question {number}, with a comma" in inputs
    assert "groundtruth" in expected
    assert "yes" in expected
    cells = _by_line(result, DATASETS[0])[number]
    assert len(combinations) == len(cells) == 4
    for pane, (error, outputs, scores) in zip(combinations, cells, strict=True):
        if error:
            assert error.split(" on line")[0].replace("<script>", "") in pane.replace("<script>", "")
        else:
            assert outputs["note"].splitlines()[0] in pane
            assert str(scores["score"]) in pane
