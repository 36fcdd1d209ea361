"""The quality gate's verdict as tables: each threshold with the winner's value and pass/fail, and every combination
against the absolute thresholds (min/max), so a reader sees which combinations would have passed too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from shared.experiments.scoring import Combination, Grid, MetricColumn, mean_scores
from shared.reports.tables import format_number

if TYPE_CHECKING:
    from shared.experiments.gate import Check, GateVerdict


@dataclass
class CheckRow:
    metric: str
    rule: str            # e.g. ">= 0.8", "drop <= 0.02 vs deployed"
    actual: str
    passed: bool
    note: str


@dataclass
class GateCell:
    text: str
    value: float | None  # None: the combination was not measured on every dataset
    passed: bool | None


@dataclass
class GateRow:
    combination: Combination
    winner: bool
    cells: list[GateCell]


@dataclass
class GateView:
    verdict: GateVerdict
    best: Combination | None
    checks: list[CheckRow]
    columns: list[str]   # the absolute thresholds, e.g. "accuracy >= 0.8"
    rows: list[GateRow]


def _rule(check: Check) -> str:
    if check.comparison == "max_drop":
        return f"drop <= {check.threshold:g} vs deployed"
    return f"{check.comparison} {check.threshold:g}"


def _column(grid: Grid, name: str) -> MetricColumn | None:
    """`accuracy` or `evaluator.accuracy`, as the gate names them."""
    matches = [c for c in grid.metrics if name in (c.name, f"{c.evaluator}.{c.name}")]
    return matches[0] if len(matches) == 1 else None


def _cell(check: Check, value: float | None) -> GateCell:
    if value is None:
        return GateCell("—", None, None)
    passed = value >= check.threshold if check.comparison == ">=" else value <= check.threshold
    return GateCell(format_number(value), value, passed)


def gate_view(extra: dict[str, Any] | None, grid: Grid) -> GateView | None:
    """The gate verdict in `extra["gate"]` (written by the gate step) as tables; None when there is none."""
    from shared.experiments.gate import GateVerdict  # here, not at the top: gate.py imports this package's grid

    raw = (extra or {}).get("gate")
    if raw is None:
        return None
    try:
        verdict = GateVerdict.model_validate(raw)
    except ValidationError:
        return None  # not a verdict this page can read: it stays in "Further decisions" as written
    winners = [c for c in grid.combinations
               if c.variant == verdict.best_variant and c.hyperparameters == verdict.best_hyperparameters]
    best = winners[0] if winners and verdict.best_value is not None else None  # no value: nobody won
    checks = [CheckRow(c.metric, _rule(c), format_number(c.actual), c.passed, c.note) for c in verdict.checks]
    absolute = [(c, column) for c in verdict.checks if c.comparison != "max_drop"
                and (column := _column(grid, c.metric)) is not None]
    means = [mean_scores(grid, column) for _, column in absolute]
    rows = [GateRow(combination, combination is best, [
        _cell(check, scores.get(combination.id)) for (check, _), scores in zip(absolute, means, strict=True)
    ]) for combination in grid.combinations] if absolute else []
    return GateView(verdict=verdict, best=best, checks=checks,
                    columns=[f"{check.metric} {check.comparison} {check.threshold:g}" for check, _ in absolute],
                    rows=rows)
