"""What an experiment produced: the data model shared by the runner, the reports and the events."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from shared.experiments.mappings import parse_reference


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

    @computed_field
    @property
    def failed_lines(self) -> int:
        return sum(1 for line in self.lines if line.failed)

    @computed_field
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


class EvaluatorMapping(BaseModel):
    """The evaluation flow's column mapping for one standard dataset: which of its inputs came from the evaluator
    dataset (the expected answer) and which from the run being scored."""

    evaluator: str
    dataset: str = Field(description="The standard dataset whose runs it scores.")
    mappings: dict[str, Any]

    @property
    def expected(self) -> list[str]:
        """The evaluator inputs fed from a data column (`${data.<column>}`): the expected answer."""
        return [name for name, value in self.mappings.items()
                if (reference := parse_reference(value)) is not None and reference.kind == "data"]


class VariantDefinition(BaseModel):
    """One variant of a node as the flow declares it, with its prompt template (or code) — what a report shows
    and diffs against the node's default variant."""

    node: str
    variant: str
    default: bool
    type: str = Field(default="", description="The node type, e.g. llm or python.")
    source: str | None = Field(default=None, description="Path of its template or code, relative to the flow.")
    text: str | None = Field(default=None, description="That file's text; None when absent or unreadable.")
    inputs: dict[str, Any] = Field(default_factory=dict)


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
    evaluator_mappings: list[EvaluatorMapping] = Field(default_factory=list)
    variant_definitions: list[VariantDefinition] = Field(default_factory=list)

    def evaluations_of(self, run_id: str) -> list[RunResult]:
        return [run for run in self.evaluation_runs if run.parent_run_id == run_id]
