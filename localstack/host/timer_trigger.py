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

from localstack.host.invoke import invoke
from localstack.host.loader import FunctionSpec, HostConfigError

log = logging.getLogger("localhost.timer")

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _parse_field(text: str, low: int, high: int, names: list[str] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            start, end = low, high
        else:
            first, _, last = base.partition("-")
            start = _value(first, names, low)
            end = _value(last, names, low) if last else (high if step_text else start)
        if not (low <= start <= high and low <= end <= high) or step < 1:
            raise HostConfigError(f"NCRONTAB field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _value(token: str, names: list[str] | None, low: int) -> int:
    if names and token[:3] in names:
        return names.index(token[:3]) + low
    return int(token)


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    interval: timedelta | None = None

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        fields = expression.split()
        if len(fields) == 1 and ":" in expression:
            hours, minutes, seconds = (int(part) for part in expression.split(":"))
            span = timedelta(hours=hours, minutes=minutes, seconds=seconds)
            if span <= timedelta(0):
                raise HostConfigError(f"timer interval {expression!r} must be positive")
            return cls(*(frozenset(),) * 6, interval=span)
        if len(fields) != 6:
            raise HostConfigError(f"NCRONTAB {expression!r} needs 6 fields: second minute hour day month weekday")
        weekdays = _parse_field(fields[5].replace("7", "0"), 0, 6, _DAYS)
        return cls(_parse_field(fields[0], 0, 59), _parse_field(fields[1], 0, 59), _parse_field(fields[2], 0, 23),
                   _parse_field(fields[3], 1, 31), _parse_field(fields[4], 1, 12, _MONTHS), weekdays)

    def next_after(self, moment: datetime) -> datetime:
        if self.interval is not None:
            return moment + self.interval
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        # Jump field by field (month, day, hour, minute, second): a few hundred steps at most.
        for _ in range(100_000):
            if candidate.month not in self.months:
                candidate = _first_of_next_month(candidate)
            elif candidate.day not in self.days or (candidate.isoweekday() % 7) not in self.weekdays:
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
            elif candidate.minute not in self.minutes:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
            elif candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise HostConfigError("schedule never fires")


def _first_of_next_month(moment: datetime) -> datetime:
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return moment.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)


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
            last, due = due, self._schedule.next_after(now)

    def _fire(self, scheduled: datetime, last: datetime | None, past_due: bool) -> None:
        status = {"Last": last.isoformat() if last else None, "Next": self._schedule.next_after(scheduled).isoformat(),
                  "LastUpdated": datetime.now(UTC).isoformat()}
        request = TimerRequestConverter.decode(
            Datum(json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}),
                  "json"), trigger_metadata={})
        with contextlib.suppress(Exception):
            invoke(self._spec, request, reason=f"Timer fired at {scheduled.isoformat()}")
