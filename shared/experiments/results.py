"""What an experiment produced: the data model shared by the runner, the reports and the events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field


class LineResult(BaseModel):
    line_number: int = Field(ge=0)
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    error: str | None = None
    duration_ms: float = Field(ge=0)
    tokens: int = Field(default=0, ge=0)

    @property
    def failed(self) -> bool:
        return self.error is not None


class RunResult(BaseModel):
    run_id: str
    kind: Literal["standard", "evaluation"]
    flow: str = Field(description="Flow folder, relative to the use case.")
    dataset: str
    variant: dict[str, str] = Field(default_factory=dict, description="node -> variant id")
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    evaluator: str | None = None
    parent_run_id: str | None = Field(default=None, description="For evaluation runs: the standard run scored.")
    status: Literal["completed", "failed"]
    error: str | None = None
    lines: list[LineResult] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    started_at: datetime
    duration_seconds: float = Field(ge=0)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed_lines(self) -> int:
        return sum(1 for line in self.lines if line.failed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens(self) -> int:
        return sum(line.tokens for line in self.lines)

    @property
    def failure_rate(self) -> float:
        return self.failed_lines / len(self.lines) if self.lines else 1.0

    @property
    def label(self) -> str:
        """Human-readable name of the combination, e.g. 'summarize=variant_1, temperature=0.2'."""
        parts = [f"{node}={variant}" for node, variant in sorted(self.variant.items())]
        parts += [f"{name}={value}" for name, value in sorted(self.hyperparameters.items())]
        return ", ".join(parts) or "defaults"


class ExperimentResult(BaseModel):
    experiment_id: str
    use_case: str
    environment: str
    status: Literal["completed", "failed"]
    failures: list[str] = Field(default_factory=list)
    standard_runs: list[RunResult]
    evaluation_runs: list[RunResult] = Field(default_factory=list)
    started_at: datetime
    finished_at: datetime
    decisions: dict[str, Any] = Field(default_factory=dict, description="Everything decided, for experiment.json.")

    def evaluations_of(self, run_id: str) -> list[RunResult]:
        return [run for run in self.evaluation_runs if run.parent_run_id == run_id]
