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
"""

from __future__ import annotations

from datetime import timedelta

from croniter import croniter
from pydantic import Field, field_validator

from shared.experiments.fields import StrictBlock


class MonitoringConfig(StrictBlock):
    schedule: str = Field(default="0 */5 * * * *", description="NCRONTAB: when the monitor looks (six fields)")
    window_minutes: float = Field(default=15, gt=0, le=24 * 60)
    min_requests: int = Field(default=20, ge=1)
    max_error_rate: float | None = Field(default=0.05, ge=0, le=1)
    latency_p95_ms: float | None = Field(default=None, gt=0)
    auto_rollback: bool = False
    mask_fields: list[str] = Field(default_factory=list, description="fields never stored in production logs")

    @field_validator("schedule")
    @classmethod
    def _ncrontab(cls, value: str) -> str:
        if len(value.split()) != 6 or not croniter.is_valid(value, second_at_beginning=True):
            raise ValueError(f"{value!r} is not an NCRONTAB schedule (six fields: second minute hour day month "
                             "weekday, e.g. '0 */5 * * * *')")
        return value

    @property
    def window(self) -> timedelta:
        return timedelta(minutes=self.window_minutes)
