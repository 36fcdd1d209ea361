"""The event journal on Azurite: correlation ids that make the same folder name ("run/1", "run_1", "run?1") share
audit/run_1/, yet each id's journal holds only its own events — the journal route never shows another run's."""

from __future__ import annotations

import pytest

from shared.audit import EventJournal
from shared.events import PipelineTriggered
from shared.ports import BlobStore

pytestmark = pytest.mark.azurite


def test_ids_sharing_a_folder_keep_their_own_events(blob_store: BlobStore, unique: str) -> None:
    journal = EventJournal(blob_store)
    ids = [f"run{unique}/1", f"run{unique}_1", f"run{unique}?1"]
    for number, correlation_id in enumerate(ids):
        journal.record(PipelineTriggered.create({"pipeline": "pr", "run_id": str(number), "environment": "pr",
                                                 "use_cases": ["math_coding"]}, correlation_id=correlation_id))
    for number, correlation_id in enumerate(ids):
        assert [e.payload.run_id for e in journal.events_for(correlation_id)] == [str(number)]
    assert journal.events_for(f"run{unique}.1") == []
