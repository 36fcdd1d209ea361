"""`genaiops wait` as tests use it: follow one run in a journal, return the exit code and what it printed."""

from __future__ import annotations

import io
from collections.abc import Collection

from rich.console import Console

from genaiops.follow import wait
from shared.audit import EventJournal


def waited(journal: EventJournal, correlation_id: str, until: Collection[str], fail_on: Collection[str] = (),
           timeout: float = 5) -> tuple[int, str]:
    printed = io.StringIO()
    result = wait(journal, correlation_id, until=until, fail_on=fail_on, timeout=timeout, poll=0.1,
                  console=Console(file=printed, width=200, soft_wrap=True))
    return result.exit_code, printed.getvalue()
