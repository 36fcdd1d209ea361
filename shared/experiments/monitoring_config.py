"""The `monitoring:` block of experiment.yaml (per environment through the overlays): what the production monitor
watches on the use case's endpoint, how often, and whether a breach moves traffic back on its own.

    monitoring:
      schedule: "0 */5 * * * *"   # NCRONTAB (seconds first, as Azure Functions timers)
      window_minutes: 15          # the sliding window the statistics cover
      min_requests: 20            # fewer requests than this in the window: no verdict
      max_error_rate: 0.05        # share of requests answered with a non-2xx status
      latency_p95_ms: 5000        # 95th percentile of the end-to-end latency
      auto_rollback: true         # on a breach, move the deployment's traffic back to the prior one
      mask_fields: [email, phone] # input/output fields (any depth) logged as *** — personal data
      evaluation:                 # post-production evaluation (shared/services/production_evaluation.py)
        schedule: "0 0 * * * *"   # NCRONTAB: when sampled new production lines are judged
        sample_rate: 0.1          # share of routed, answered requests judged (chosen by request id)
        max_lines: 50             # at most this many lines a run, shared evenly between the deployments
        lookback_minutes: 60      # lines are taken from this far back (late lines too), each judged once
        evaluators:               # any promptflow flow of the use case, fed from each logged request
        - name: judge
          flow: flows/judge
          mappings: {question: "${data.question}", answer: "${run.outputs.answer}"}
        thresholds:               # per deployment, over the run's judged lines
        - {metric: judge.score, min: 3.5}
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar

from croniter import croniter
from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, field_validator, model_validator

from shared.experiments.fields import StrictBlock, check_mappings, check_name
from shared.experiments.mappings import ReferenceKind


def check_ncrontab(value: str) -> str:
    if len(value.split()) != 6 or not croniter.is_valid(value, second_at_beginning=True):
        raise ValueError(f"{value!r} is not an NCRONTAB schedule (six fields: second minute hour day month "
                         "weekday, e.g. '0 */5 * * * *')")
    return value


Schedule = Annotated[str, AfterValidator(check_ncrontab)]


class ProductionEvaluator(StrictBlock):
    """A flow that scores one logged request: `${data.<input>}` / `${run.inputs.<input>}` read the request's
    inputs, `${run.outputs.<output>}` the answer the deployment gave."""

    name: Annotated[str, BeforeValidator(check_name)]
    flow: str | None = Field(default=None, description="Evaluation flow folder; default: the evaluator's name.")
    mappings: dict[str, Any] = Field(default_factory=dict)

    _allowed: ClassVar[tuple[ReferenceKind, ...]] = ("data", "run.outputs", "run.inputs")
    _flow_dir: Path | None = PrivateAttr(default=None)

    @field_validator("mappings", mode="before")
    @classmethod
    def _mappings(cls, value: Any) -> dict[str, Any]:
        return check_mappings(value, cls._allowed, "'${data.<input>}' | '${run.outputs.<output>}' | literal")

    @property
    def flow_dir(self) -> Path:
        if self._flow_dir is None:
            raise RuntimeError(f"evaluator {self.name!r} was not built by ExperimentConfig: its path is unresolved")
        return self._flow_dir


class MetricThreshold(StrictBlock):
    """`<evaluator>.<output>`: the mean of that numeric per-line output over a deployment's judged lines."""

    metric: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.[A-Za-z0-9_]+$")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> MetricThreshold:
        if self.min is None and self.max is None:
            raise ValueError(f"threshold on {self.metric!r} needs min or max")
        return self


class ProductionEvaluationConfig(StrictBlock):
    schedule: Schedule = "0 0 * * * *"
    sample_rate: float = Field(default=0.1, gt=0, le=1)
    max_lines: int = Field(default=50, ge=1, le=1000, description="Lines judged per run, all deployments together")
    lookback_minutes: float = Field(default=60, gt=0, le=7 * 24 * 60)
    min_lines: int = Field(default=5, ge=1, description="Fewer judged lines for a deployment: no verdict")
    # As an experiment item: run_seconds + one line_timeout_seconds stay within host.json's 10 minutes.
    run_seconds: int = Field(default=180, ge=10, le=240, description="Lines not started by then wait for the next run")
    evaluators: list[ProductionEvaluator] = Field(min_length=1)
    thresholds: list[MetricThreshold] = Field(default_factory=list)
    primary_metric: str | None = Field(default=None, description="Ranks the worst lines; default: first threshold's")

    @property
    def lookback(self) -> timedelta:
        return timedelta(minutes=self.lookback_minutes)

    @property
    def ranking_metric(self) -> str | None:
        return self.primary_metric or (self.thresholds[0].metric if self.thresholds else None)


class MonitoringConfig(StrictBlock):
    schedule: Schedule = Field(default="0 */5 * * * *", description="NCRONTAB: when the monitor looks (six fields)")
    window_minutes: float = Field(default=15, gt=0, le=24 * 60)
    min_requests: int = Field(default=20, ge=1)
    max_error_rate: float | None = Field(default=0.05, ge=0, le=1)
    latency_p95_ms: float | None = Field(default=None, gt=0)
    auto_rollback: bool = False
    mask_fields: list[str] = Field(default_factory=list, description="fields never stored in production logs")
    evaluation: ProductionEvaluationConfig | None = None

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)
