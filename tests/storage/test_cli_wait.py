"""`shared.cli wait` over a journal in Azurite: progress lines while an experiment runs, the outcome's exit code."""

from __future__ import annotations

import pytest

from shared import cli
from shared.audit import EventJournal
from shared.events import EvaluationCompleted, ExperimentItemRequested, ExperimentProgressed, ExperimentRequested
from shared.ports import BlobStore

pytestmark = pytest.mark.azurite


def test_wait_prints_progress_and_hides_the_work_items(blob_store: BlobStore, unique: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    journal = EventJournal(blob_store)
    monkeypatch.setattr(cli, "_journal", lambda: journal)
    requested = ExperimentRequested.create({"use_case": "math_coding"}, correlation_id=unique)
    item = requested.follow_up(ExperimentItemRequested, {"use_case": "math_coding", "experiment_id": "e1",
                                                         "stage": "standard", "item_id": "r.000000"}, key="a")
    progress = {"use_case": "math_coding", "experiment_id": "e1", "stage": "standard", "items_total": 4,
                "lines_total": 44}
    halfway = requested.follow_up(ExperimentProgressed, {**progress, "items_done": 2, "lines_done": 24}, key="1")
    done = requested.follow_up(EvaluationCompleted, {"use_case": "math_coding", "experiment_id": "e1", "runs": [],
                                                     "report_uri": "reports/math_coding/e1/summary.html"})
    for event in (requested, item, halfway, done):
        journal.record(event)

    assert cli.wait(unique, {"evaluation.completed"}, {"experiment.failed"}, timeout=10, poll=0.1) == 0
    printed = capsys.readouterr().out.splitlines()
    assert any("progress math_coding e1 standard: 24/44 lines (2/4 work items)" in line for line in printed)
    assert not any("experiment.item_requested" in line for line in printed)
    assert printed[-1].endswith(f"evaluation.completed {done.id}")
