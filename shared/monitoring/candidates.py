"""Back into data: production lines users rated badly, exported as a candidate dataset for a person to label.

Never automatic: the export is asked for (`genaiops candidates export`, or POST /api/candidates/{use_case}: both take
`CandidateFilters` and call shared/services/candidate_export.py), and only a person uploading the labelled file to
`datasets/{use_case}/` starts the next experiment — no loop retrains on its own output.
Each row is the request's inputs (the columns a dataset of the use case has) plus `production`: the request id,
deployment, time, the answer given and the user's rating and comment.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.blob_layout import CANDIDATES, candidate_dataset_name
from shared.feedback.submissions import FeedbackRecord, load_feedback
from shared.monitoring.production_log import ProductionLine, ProductionLog, loggable
from shared.ports import BlobStore

MAX_DAYS = 30  # as long as production logs live (the storage lifecycle rule on production/)


class InvalidWindow(ValueError):
    """The filters' look-back does not end in the past."""


class CandidateFilters(BaseModel):
    """Which lines to export: those served in the look-back (`days` up to now, or from `since`) whose latest rating
    is at most `max_rating`, or thumbs down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rating: int = Field(default=2, ge=1, le=5, description="ratings up to this are bad (thumbs down always is)")
    days: float = Field(default=7, gt=0, le=MAX_DAYS, description="how far back to look, in days")
    since: AwareDatetime | None = Field(default=None, description="look back to this moment instead of `days`")

    @model_validator(mode="after")
    def _one_start(self) -> CandidateFilters:
        if self.since is not None and "days" in self.model_fields_set:
            raise ValueError("give days or since, not both")
        return self

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        start = self.since if self.since is not None else now - timedelta(days=self.days)
        if start >= now:
            raise InvalidWindow(f"since {start.isoformat()} is not in the past")
        return max(start, now - timedelta(days=MAX_DAYS)), now


def is_bad(record: FeedbackRecord, max_rating: int) -> bool:
    return record.thumbs == "down" or (record.rating is not None and record.rating <= max_rating)


def candidate_row(line: ProductionLine, feedback: FeedbackRecord, mask_fields: Collection[str]) -> dict[str, Any]:
    """Masked again with the use case's fields: Azure ML's collector stores what it was sent."""
    inputs = loggable(line.inputs, mask_fields)
    return {**(inputs if isinstance(inputs, dict) else {"input": inputs}), "production": {
        "request_id": line.request_id, "deployment": line.deployment, "time": line.time.isoformat(),
        "status": line.status, "outputs": loggable(line.outputs, mask_fields), "rating": feedback.rating,
        "thumbs": feedback.thumbs, "comment": feedback.comment}}


def export_candidates(blobs: BlobStore, production_log: ProductionLog, use_case: str, endpoint: str,
                      start: datetime, end: datetime, *, max_rating: int = 2,
                      mask_fields: Collection[str] = ()) -> tuple[str | None, int]:
    """Write the badly rated lines served from `start` to `end`; returns the blob name (None when there were
    none) and the row count. The latest rating of a request counts."""
    latest: dict[str, FeedbackRecord] = {}
    for record in load_feedback(blobs, use_case, endpoint):  # oldest first: later ratings win
        latest[record.request_id] = record
    bad = {request_id: record for request_id, record in latest.items() if is_bad(record, max_rating)}
    served = production_log.lines(use_case, endpoint, start, end)
    rows = [candidate_row(line, bad[line.request_id], mask_fields) for line in served
            if line.request_id in bad and line.deployment == bad[line.request_id].deployment]
    if not rows:
        return None, 0
    name = candidate_dataset_name(use_case, endpoint, end)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    blobs.write(CANDIDATES, name, data, content_type="application/jsonl")
    return name, len(rows)
