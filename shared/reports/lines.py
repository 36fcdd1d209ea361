"""Per-line views of a result: each line's scores and expected answer joined on line_number, the failed lines, and
every line of a dataset side by side across combinations (for the page's comparison tables). Pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from shared.experiments.results import ExperimentResult, LineResult, RunResult
from shared.experiments.scoring import Combination, Grid, better_direction, evaluator_name, finite

SUMMARY_CHARS = 160  # a collapsed row shows this much of a value; the expanded line shows it whole
# Lines × combinations shown per dataset: about 1.2 KB of page each, so a huge dataset still opens in a browser
# (results.csv keeps every line).
MAX_CELLS = 10_000

CellStatus = Literal["pass", "fail", "error", "unscored", "missing"]


def line_scores(result: ExperimentResult, run: RunResult) -> dict[int, dict[str, Any]]:
    """Per-line outputs of the evaluation runs that scored `run`, as {line_number: {score column: value}}."""
    scores: dict[int, dict[str, Any]] = {}
    for evaluation in result.evaluations_of(run.run_id):
        prefix = f"score.{evaluator_name(evaluation)}."
        for line in evaluation.lines:
            for key, value in (line.outputs or {}).items():
                scores.setdefault(line.line_number, {})[prefix + key] = value
    return scores


def expected_columns(result: ExperimentResult) -> list[str]:
    """`expected.<evaluator>.<input>` for every evaluator input its column mapping fed from the evaluator dataset."""
    return list(dict.fromkeys(f"expected.{mapping.evaluator}.{name}"
                              for mapping in result.evaluator_mappings for name in mapping.expected))


def expected_values(result: ExperimentResult, dataset: str) -> dict[int, dict[str, Any]]:
    """{line_number: {expected column: value}} on one standard dataset, as the evaluators received them.

    Read from any evaluation run of that dataset: every combination's run is scored against the same rows, so a
    line one combination failed (and nobody scored for it) still shows the answer another run was scored against."""
    fed = {(m.evaluator, m.dataset): m.expected for m in result.evaluator_mappings}
    values: dict[int, dict[str, Any]] = {}
    for evaluation in result.evaluation_runs:
        names = fed.get((evaluator_name(evaluation), evaluation.dataset), []) if evaluation.dataset == dataset else []
        for line in evaluation.lines if names else []:
            found = values.setdefault(line.line_number, {})
            for name in names:
                if name in line.inputs:
                    found.setdefault(f"expected.{evaluator_name(evaluation)}.{name}", line.inputs[name])
    return values


# --- failed lines -----------------------------------------------------------------------------------------


@dataclass
class FailedLine:
    combination: Combination
    run: RunResult
    line_number: int
    error: str


def failed_lines(grid: Grid) -> list[FailedLine]:
    """Every failed line of every standard run, in table order — none left out."""
    found = []
    for combination in grid.combinations:
        for dataset in grid.datasets:
            run = grid.runs.get((combination.id, dataset))
            if run is None:
                continue
            found += [
                FailedLine(combination, run, line.line_number, line.error or "")
                for line in sorted(run.lines, key=lambda item: item.line_number) if line.failed
            ]
    return found


# --- side by side -----------------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A value as a person reads it: strings as they are, anything else as indented JSON."""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False, default=str)


def summary(value: Any, limit: int = SUMMARY_CHARS) -> str:
    """One line of at most `limit` characters: a mapping as `name: value · name: value`, whitespace collapsed."""
    if isinstance(value, dict):
        text = " · ".join(f"{name}: {item if isinstance(item, str) else _json(item)}" for name, item in value.items())
    else:
        text = value if isinstance(value, str) else _json(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _output_value(outputs: dict[str, Any]) -> Any:
    """A flow with one output shows that output's value; several show the whole mapping."""
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


@dataclass
class Score:
    name: str
    text: str
    passed: bool | None  # None: the score does not say pass or fail (e.g. 0.7 similarity, or lower is better)


def judge(name: str, value: Any) -> bool | None:
    """A per-line check: true/false as given; a higher-is-better score of 0 fails and of 1 passes (a 0/1 match or
    grade). Anything else (0.7 similarity, a 1-5 rating, text, lower-is-better numbers) is shown without a verdict."""
    if isinstance(value, bool):
        return value
    number = finite(value)
    if number is None or better_direction(name) == "lower" or number not in (0.0, 1.0):
        return None
    return number == 1.0


@dataclass
class Cell:
    """One combination's answer to one line."""
    combination: Combination
    status: CellStatus
    outputs: tuple[tuple[str, str], ...] = ()  # (output name, whole text), for the expanded line
    output_summary: str = ""
    error: str | None = None
    scores: tuple[Score, ...] = ()
    duration_ms: float | None = None
    tokens: int | None = None
    sort_value: str = ""     # mean of its numeric scores; empty (sorted last) when it has none

    @property
    def answer(self) -> str:
        """What decides whether combinations agree: the output, or that it failed."""
        return f"error: {self.error}" if self.status == "error" else _json(self.outputs)


def _cell(combination: Combination, line: LineResult | None, scores: dict[str, Any], prefixed: bool) -> Cell:
    if line is None:
        return Cell(combination, "missing")
    if line.failed:
        return Cell(combination, "error", error=line.error, duration_ms=line.duration_ms, tokens=line.tokens)
    judged = tuple(
        Score(name.removeprefix("score.") if prefixed else name.split(".")[-1], summary(value, 40),
              judge(name.split(".")[-1], value))
        for name, value in scores.items()
    )
    verdicts = [score.passed for score in judged if score.passed is not None]
    status: CellStatus = "unscored" if not verdicts else "pass" if all(verdicts) else "fail"
    numbers = [number for value in scores.values()
               if (number := float(value) if isinstance(value, bool) else finite(value)) is not None]
    outputs = line.outputs or {}
    return Cell(combination, status, outputs=tuple((name, as_text(value)) for name, value in outputs.items()),
                output_summary=summary(_output_value(outputs)), scores=judged,
                duration_ms=line.duration_ms, tokens=line.tokens,
                sort_value=repr(sum(numbers) / len(numbers)) if numbers else "")


@dataclass
class ComparedLine:
    line_number: int
    inputs: list[tuple[str, str]]     # (input name, whole text)
    input_summary: str
    expected: list[tuple[str, str]]   # (evaluator input, whole text); empty when no mapping says
    expected_summary: str
    cells: list[Cell]                 # one per combination of the table, in its order

    @property
    def passed(self) -> int:
        return sum(1 for cell in self.cells if cell.status == "pass")

    @property
    def failed(self) -> bool:
        return any(cell.status in ("fail", "error") for cell in self.cells)

    @property
    def disagree(self) -> bool:
        """The combinations that ran this line got different results (pass / fail / error) or, where none of them
        was judged, different outputs. Judged results come first because LLM wording nearly always differs."""
        ran = [cell for cell in self.cells if cell.status != "missing"]
        if any(cell.status in ("pass", "fail") for cell in ran):
            return len({cell.status for cell in ran}) > 1
        return len({cell.answer for cell in ran}) > 1


@dataclass
class LineTable:
    id: str
    dataset: str
    combinations: list[Combination]
    expected: bool                    # whether any line has an expected answer (the column is shown)
    lines: list[ComparedLine]
    total: int                        # lines in the dataset; more than len(lines) when cut at max_cells


def _label(column: str, prefixed: bool) -> str:
    """`expected.<evaluator>.<input>` -> `<input>`, or `<evaluator>.<input>` when several evaluators feed one."""
    name = column.removeprefix("expected.")
    return name if prefixed else name.split(".", 1)[-1]


def line_table(result: ExperimentResult, grid: Grid, dataset: str, max_cells: int = MAX_CELLS) -> LineTable:
    """Every line of one dataset (the first ones, up to `max_cells` lines × combinations): its inputs, expected
    answer and each combination's output and scores."""
    runs = {c.id: run for c in grid.combinations if (run := grid.runs.get((c.id, dataset))) is not None}
    combinations = [c for c in grid.combinations if c.id in runs]
    by_number = {c.id: {line.line_number: line for line in runs[c.id].lines} for c in combinations}
    scores = {c.id: line_scores(result, runs[c.id]) for c in combinations}
    expected = expected_values(result, dataset)
    prefixed = len({run.evaluator for run in result.evaluation_runs}) > 1
    numbers = sorted({number for lines in by_number.values() for number in lines})
    lines = []
    for number in numbers[:max(1, max_cells // max(1, len(combinations)))]:
        first = next(lines[number] for lines in by_number.values() if number in lines)
        wanted = expected.get(number, {})
        lines.append(ComparedLine(
            line_number=number,
            inputs=[(name, as_text(value)) for name, value in first.inputs.items()],
            input_summary=summary(_output_value(first.inputs)),
            expected=[(_label(column, prefixed), as_text(value)) for column, value in wanted.items()],
            expected_summary=summary(_output_value(wanted)) if wanted else "",
            cells=[_cell(c, by_number[c.id].get(number), scores[c.id].get(number, {}), prefixed)
                   for c in combinations],
        ))
    return LineTable(id=f"lines-{grid.datasets.index(dataset) + 1}", dataset=dataset, combinations=combinations,
                     expected=bool(expected), lines=lines, total=len(numbers))
