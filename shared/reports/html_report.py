"""summary.html: one self-contained page (inline CSS, inline SVG, a short inline script to sort, filter and expand).

It opens from a blob URL, a pipeline artifact or a laptop without network, and every value in it went
through Jinja's autoescaping — model outputs and error messages are data, never markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from shared.experiments.results import ExperimentResult, RunResult
from shared.experiments.scoring import Grid, Verdict, build_grid, verdicts
from shared.redaction import redact
from shared.reports.charts import BarGroup, grouped_bar_chart
from shared.reports.gate_table import gate_view
from shared.reports.lines import failed_lines, line_table
from shared.reports.prompts import node_variants, variant_anchor
from shared.reports.tables import Redacted, dataset_table, overall_table, redacted
from shared.templating import render_template

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "summary.html.j2"


@dataclass
class Chart:
    title: str
    subtitle: str
    svg: Markup


@dataclass
class Entry:
    """One decision for the definition list: short scalars inline, structures as pretty JSON."""
    key: str
    text: str
    block: bool


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def entries(values: dict[str, Any]) -> list[Entry]:
    found = []
    for key, value in values.items():
        if value is None or isinstance(value, str | int | float | bool):
            found.append(Entry(str(key), json.dumps(value) if not isinstance(value, str) else value, block=False))
        else:
            found.append(Entry(str(key), json.dumps(value, indent=2, ensure_ascii=False, default=str), block=True))
    return found


def charts(grid: Grid, found: list[Verdict]) -> list[Chart]:
    """Metric by combination (one bar per dataset) for each metric, then duration and tokens per run."""
    drawn = []
    winners = {verdict.metric.key: {c.id for c in verdict.best} for verdict in found}
    for metric in grid.metrics:
        groups = [
            BarGroup(f"{c.id} · {c.label}", [grid.value(c, dataset, metric) for dataset in grid.datasets],
                     highlight=c.id in winners.get(metric.key, set()))
            for c in grid.combinations
        ]
        subtitle = f"{metric.evaluator} · {metric.direction} is better"
        drawn.append(Chart(metric.title, subtitle, grouped_bar_chart(metric.title, grid.datasets, groups)))

    def per_run(title: str, subtitle: str, measure: Callable[[RunResult], float]) -> Chart:
        groups = [
            BarGroup(f"{c.id} · {c.label}", [
                measure(run) if (run := grid.runs.get((c.id, dataset))) is not None else None
                for dataset in grid.datasets
            ])
            for c in grid.combinations
        ]
        return Chart(title, subtitle, grouped_bar_chart(title, grid.datasets, groups))

    drawn.append(per_run("Compute time per run (seconds)", "sum of the run's line durations",
                         lambda run: run.duration_seconds))
    drawn.append(per_run("Tokens per run", "sum over the run's lines", lambda run: float(run.tokens)))
    return drawn


def _failed_runs(result: ExperimentResult) -> list[RunResult]:
    return [run for run in [*result.standard_runs, *result.evaluation_runs] if run.status == "failed"]


def render_summary_html(result: ExperimentResult | Redacted, extra: dict[str, Any] | None = None, *,
                        generated_at: datetime | None = None, files: dict[str, str] | None = None) -> str:
    """The page for one experiment. `files` maps a link text to a path relative to the page (the CSVs)."""
    safe = redacted(result).result
    grid = build_grid(safe)
    found = verdicts(grid)
    tables = [dataset_table(grid, dataset) for dataset in grid.datasets]
    if len(grid.datasets) > 1:
        tables.insert(0, overall_table(grid))
    lines = [line for run in safe.standard_runs for line in run.lines]
    further = redact(extra or {})
    gate = gate_view(further, grid)
    if gate is not None:  # shown as its own section; the raw JSON stays in experiment.json
        further = {key: value for key, value in further.items() if key != "gate"}
    context = {
        "result": safe,
        "duration": format_duration((safe.finished_at - safe.started_at).total_seconds()),
        "compute": format_duration(sum(run.duration_seconds for run in safe.standard_runs)),
        "started": format_time(safe.started_at),
        "finished": format_time(safe.finished_at),
        "generated": format_time(generated_at or datetime.now(UTC)),
        "grid": grid,
        "verdicts": found,
        "tables": tables,
        "charts": charts(grid, found),
        "failed_lines": failed_lines(grid),
        "gate": gate,
        "line_tables": [line_table(safe, grid, dataset) for dataset in grid.datasets],
        "node_variants": node_variants(safe),
        "variant_anchor": variant_anchor,
        "failed_runs": _failed_runs(safe),
        "total_lines": len(lines),
        "total_failed": sum(1 for line in lines if line.failed),
        "total_tokens": sum(line.tokens for line in lines),
        "decisions": entries(safe.decisions),
        "extra": entries(further),
        "files": files or {},
    }
    return render_template(TEMPLATES, TEMPLATE, **context)
