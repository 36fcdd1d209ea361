"""Follow runs by correlation id in the journal until each reaches a wanted or a failing event, or one of its
messages is dead-lettered (it can never be handled: the run is stuck); a progress bar per experiment stage (lines
done / total) on a terminal, one line per progress event in a pipeline's log."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from shared.audit import DeadLetterNote, EventJournal, JournalEntry
from shared.events import EXPERIMENT_WORK_EVENTS, Event, ExperimentProgressed

EXIT_OK = 0
EXIT_FAILED_EVENT = 3
EXIT_TIMEOUT = 4
EXIT_DEAD_LETTERED = 5


@dataclass
class FollowResult:
    exit_code: int
    timelines: dict[str, list[Event]] = field(default_factory=dict)
    failed: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetterNote] = field(default_factory=list)


def since_last_trigger(entries: list[JournalEntry]) -> list[JournalEntry]:
    """A re-run pipeline stage reuses its correlation id: only what follows its latest trigger counts."""
    starts = [index for index, entry in enumerate(entries)
              if isinstance(entry, Event) and entry.type == "pipeline.triggered"]
    return entries[starts[-1]:] if starts else entries


def _key(entry: JournalEntry) -> str:
    return entry.id if isinstance(entry, Event) else f"dead-letter/{entry.message_key}/{entry.sequence_number}"


class _Display:
    """Progress bars on a terminal; elsewhere every line is printed, so a pipeline log shows how far it got."""

    def __init__(self, console: Console, describe: Callable[[Event], str]) -> None:
        self._describe = describe
        self._live = console.is_terminal
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("lines"), TimeElapsedColumn(), console=console, disable=not self._live)
        self._tasks: dict[tuple[str, str, str], TaskID] = {}

    def __enter__(self) -> _Display:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def show(self, event: Event) -> None:
        if isinstance(event, ExperimentProgressed) and self._live:
            p = event.payload
            key = (p.use_case, p.experiment_id, p.stage)
            if key not in self._tasks:
                self._tasks[key] = self._progress.add_task(f"{p.use_case} {p.stage}", total=p.lines_total)
            self._progress.update(self._tasks[key], completed=p.lines_done, total=p.lines_total)
            return
        self._progress.console.print(self._describe(event), highlight=False, markup=False)


def follow(journal: EventJournal, correlation_ids: Collection[str], *, until: Collection[str],
           fail_on: Collection[str], timeout: float, describe: Callable[[Event], str], poll: float = 2.0,
           on_event: Callable[[Event], str | None] | None = None, console: Console | None = None) -> FollowResult:
    """Print each run's events once, call `on_event` for each, and end when every run has a wanted or a failing
    event (exit 0, or 3 when any failed), at a dead letter of any run (exit 5), or at the time-out (exit 4).
    `on_event` may start another run: the correlation id it returns is followed too."""
    console = console or Console(soft_wrap=True)  # one event, one line, whatever the width
    seen: set[str] = set()
    followed = list(correlation_ids)
    result = FollowResult(EXIT_TIMEOUT)
    deadline = time.monotonic() + timeout
    with _Display(console, describe) as display:
        while time.monotonic() < deadline:
            for correlation_id in list(followed):
                entries = since_last_trigger(journal.entries_for(correlation_id))
                result.timelines[correlation_id] = [entry for entry in entries if isinstance(entry, Event)]
                for entry in entries:
                    if _key(entry) in seen:
                        continue
                    seen.add(_key(entry))
                    if isinstance(entry, DeadLetterNote):
                        result.dead_letters.append(entry)
                        continue
                    if entry.type not in EXPERIMENT_WORK_EVENTS:  # one per work item; progress says how far
                        display.show(entry)
                    if entry.type in fail_on:
                        result.failed.append(entry)
                    started = on_event(entry) if on_event is not None else None
                    if started and started not in followed:
                        followed.append(started)
            if result.dead_letters:
                for letter in result.dead_letters:
                    console.print(f"dead-lettered message {letter.message_id}: {letter.reason}: {letter.description}",
                                  style="red", markup=False, highlight=False)
                result.exit_code = EXIT_DEAD_LETTERED
                return result
            ended = [any(e.type in until or e.type in fail_on for e in result.timelines.get(correlation_id, []))
                     for correlation_id in followed]
            if ended and all(ended):
                result.exit_code = EXIT_FAILED_EVENT if result.failed else EXIT_OK
                return result
            time.sleep(poll)
    console.print(f"timed out after {timeout:.0f} s waiting for {', '.join(sorted(until))}", style="red")
    return result


def wait(journal: EventJournal, correlation_id: str, *, until: Collection[str], fail_on: Collection[str],
         timeout: float, poll: float = 2.0, console: Console | None = None) -> FollowResult:
    """Follow one run, each event as one readable line (`genaiops wait`)."""
    from genaiops.describe import line

    return follow(journal, [correlation_id], until=until, fail_on=fail_on, timeout=timeout, describe=line, poll=poll,
                  console=console)
