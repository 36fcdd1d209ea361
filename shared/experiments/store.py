"""The experiment store: an experiment's durable state — its plan, every finished line, every finished work item
and the final result. Reports are projections of it; the gate, registration and release read it, not reports.

An experiment is a persisted state machine: experiment.requested writes the plan and fans the standard work items
out on the bus; each item checkpoints its lines as they finish and marks itself done; whoever marks the last item
of a stage done announces the stage (same event id from every instance, so it is handled once); the evaluation
stage goes the same way; the last stage's handler writes the result and the reports.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.experiments.results import ExperimentResult, LineResult

Stage = Literal["standard", "evaluation"]
RunnerKind = Literal["local", "azureml"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class PlannedRun(_Frozen):
    """One run of the experiment: a variant combination (or an evaluator) over one dataset."""

    run_id: str
    kind: Stage
    flow: str = Field(description="Flow folder, relative to the use case.")
    dataset: str
    variant: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    evaluator: str | None = None
    parent_run_id: str | None = None
    line_numbers: list[int] = Field(description="The dataset lines this run covers.")


class WorkItem(_Frozen):
    """A bounded piece of work: some lines of one run (or, on Azure ML, a whole run), taken by any instance."""

    item_id: str
    run_id: str
    line_numbers: list[int]
    runner: RunnerKind = "local"


class StagePlan(_Frozen):
    stage: Stage
    runs: list[PlannedRun]
    items: list[WorkItem]

    def run(self, run_id: str) -> PlannedRun:
        return next(run for run in self.runs if run.run_id == run_id)

    def item(self, item_id: str) -> WorkItem:
        return next(item for item in self.items if item.item_id == item_id)

    @property
    def lines(self) -> int:
        return sum(len(item.line_numbers) for item in self.items)


class ExperimentPlan(_Frozen):
    """Everything decided when the experiment was requested; written once, read by every work item."""

    experiment_id: str
    use_case: str
    environment: str
    requested_by: str = Field(description="The experiment.requested event id: the root of every derived id.")
    correlation_id: str
    started_at: datetime
    datasets: list[str] = Field(description="Standard datasets, in configuration order.")
    concurrency: int
    line_timeout_seconds: int
    item_seconds: int
    max_failure_rate: float
    decisions: dict[str, Any] = Field(default_factory=dict)
    standard: StagePlan


class LineCheckpoint(_Frozen):
    """One finished line, stored the moment it finishes: a resumed item never sends it to the LLM again."""

    run_id: str
    line: LineResult
    aggregation_inputs: Any = None


class ItemOutcome(_Frozen):
    """A finished work item: its lines (compacted from the checkpoints) or why its run could not start."""

    item_id: str
    run_id: str
    stage: Stage
    lines: list[LineCheckpoint] = Field(default_factory=list)
    error: str | None = Field(default=None, description="The run could not start (e.g. the flow did not load).")
    metrics: dict[str, float] = Field(default_factory=dict, description="Whole-run metrics (Azure ML runs).")
    worker: str = Field(default="", description="host:pid of the instance that finished it (for diagnosis).")


class RunMetrics(_Frozen):
    """An evaluation run's aggregated metrics (log_metric), computed once all its items are done."""

    run_id: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class Progress(_Frozen):
    experiment_id: str
    use_case: str
    stage: Stage
    items_done: int
    items_total: int
    lines_done: int
    lines_total: int
    updated_at: datetime


class ExperimentStore(Protocol):
    def save_plan(self, plan: ExperimentPlan) -> ExperimentPlan:
        """Write the plan unless one exists; return the stored one (a redelivered request reuses it)."""
        ...

    def plan(self, use_case: str, experiment_id: str) -> ExperimentPlan: ...

    def find_plan(self, use_case: str, experiment_id: str) -> ExperimentPlan | None: ...

    def save_rows(self, use_case: str, experiment_id: str, dataset: str, rows: list[dict[str, Any]]) -> None:
        """Snapshot a dataset's rows: every item reads the same data, whatever is uploaded meanwhile."""
        ...

    def rows(self, use_case: str, experiment_id: str, dataset: str) -> list[dict[str, Any]]: ...

    def save_evaluation_plan(self, use_case: str, experiment_id: str, stage: StagePlan) -> StagePlan: ...

    def evaluation_plan(self, use_case: str, experiment_id: str) -> StagePlan: ...

    def record_line(self, use_case: str, experiment_id: str, checkpoint: LineCheckpoint) -> None: ...

    def lines(self, use_case: str, experiment_id: str, run_id: str) -> dict[int, LineCheckpoint]: ...

    def finish_item(self, use_case: str, experiment_id: str, outcome: ItemOutcome) -> None: ...

    def item_outcome(self, use_case: str, experiment_id: str, stage: Stage, item_id: str) -> ItemOutcome | None: ...

    def finished_items(self, use_case: str, experiment_id: str, stage: Stage) -> list[str]:
        """Ids of the stage's finished items (cheap: names only)."""
        ...

    def item_outcomes(self, use_case: str, experiment_id: str, stage: Stage) -> list[ItemOutcome]: ...

    def save_run_metrics(self, use_case: str, experiment_id: str, metrics: RunMetrics) -> None: ...

    def run_metrics(self, use_case: str, experiment_id: str) -> dict[str, RunMetrics]:
        """Run id -> metrics, for the evaluation runs aggregated so far."""
        ...

    def save_progress(self, progress: Progress) -> None: ...

    def progress(self, use_case: str, experiment_id: str) -> Progress | None: ...

    def save_result(self, result: ExperimentResult) -> None: ...

    def result(self, use_case: str, experiment_id: str) -> ExperimentResult: ...

    def save_verdict(self, use_case: str, experiment_id: str, verdict: dict[str, Any]) -> None: ...

    def verdict(self, use_case: str, experiment_id: str) -> dict[str, Any] | None: ...
