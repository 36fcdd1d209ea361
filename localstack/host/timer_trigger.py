"""Timer triggers: NCRONTAB schedules (six fields, seconds first, as in Azure Functions) or hh:mm:ss spans."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.functions.meta import Datum
from azure.functions.timer import TimerRequestConverter
from croniter import CroniterBadDateError, croniter

from localstack.host.invoke import invoke
from localstack.host.loader import FunctionSpec, HostConfigError

log = logging.getLogger("localhost.timer")


@dataclass(frozen=True)
class Schedule:
    """An NCRONTAB expression (croniter reads it, seconds first, day and weekday both required) or a fixed span."""

    expression: str
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        fields = expression.split()
        if len(fields) == 1 and ":" in expression:
            hours, minutes, seconds = (int(part) for part in expression.split(":"))
            span = timedelta(hours=hours, minutes=minutes, seconds=seconds)
            if span <= timedelta(0):
                raise HostConfigError(f"timer interval {expression!r} must be positive")
            return cls(expression, interval=span)
        # croniter also takes five (no seconds) or seven (a year) fields; Azure Functions takes exactly six.
        if len(fields) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
            raise HostConfigError(f"NCRONTAB {expression!r} needs 6 valid fields: second minute hour day month weekday")
        return cls(expression)

    def next_after(self, moment: datetime) -> datetime:
        if self.interval is not None:
            return moment + self.interval
        # day_or=False: NCRONTAB fires only when both the day of month and the weekday match (Vixie cron ORs them).
        try:
            return croniter(self.expression, moment, day_or=False, second_at_beginning=True).get_next(datetime)
        except CroniterBadDateError as error:
            raise HostConfigError(f"schedule {self.expression!r} never fires") from error


class TimerTriggerListener:
    def __init__(self, spec: FunctionSpec) -> None:
        self._spec = spec
        self._schedule = Schedule.parse(spec.trigger["schedule"])

    def run(self, stop: threading.Event) -> None:
        last: datetime | None = None
        if self._spec.trigger.get("runOnStartup"):
            self._fire(datetime.now(UTC), last, past_due=False)
            last = datetime.now(UTC)
        due = self._schedule.next_after(datetime.now(UTC))
        log.info("timer %s scheduled (%s), next at %s", self._spec.name, self._spec.trigger["schedule"], due)
        while not stop.wait(max(0.0, (due - datetime.now(UTC)).total_seconds())):
            now = datetime.now(UTC)
            self._fire(due, last, past_due=(now - due) > timedelta(seconds=5))
            # From the later of the two: a wait that ends a hair early must not fire the same slot again.
            last, due = due, self._schedule.next_after(max(now, due))

    def _fire(self, scheduled: datetime, last: datetime | None, past_due: bool) -> None:
        status = {"Last": last.isoformat() if last else None, "Next": self._schedule.next_after(scheduled).isoformat(),
                  "LastUpdated": datetime.now(UTC).isoformat()}
        request = TimerRequestConverter.decode(
            Datum(json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}),
                  "json"), trigger_metadata={})
        with contextlib.suppress(Exception):
            invoke(self._spec, request, reason=f"Timer fired at {scheduled.isoformat()}")
