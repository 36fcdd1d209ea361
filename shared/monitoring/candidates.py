"""Back into data: production lines users rated badly, exported as a candidate dataset for a person to label.

Never automatic: the export is asked for (`genaiops candidates export`), and only a person uploading the labelled
file to `datasets/{use_case}/` starts the next experiment — no loop retrains on its own output.
Each row is the request's inputs (the columns a dataset of the use case has) plus `production`: the request id,
deployment, time, the answer given and the user's rating and comment.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.blob_layout import CANDIDATES, candidate_dataset_name
from shared.feedback.service import FeedbackRecord, load_feedback
from shared.monitoring.production_log import ProductionLine, ProductionLog
from shared.ports import BlobStore


def is_bad(record: FeedbackRecord, max_rating: int) -> bool:
    return record.thumbs == "down" or (record.rating is not None and record.rating <= max_rating)


def candidate_row(line: ProductionLine, feedback: FeedbackRecord) -> dict[str, Any]:
    inputs = line.inputs if isinstance(line.inputs, dict) else {"input": line.inputs}
    return {**inputs, "production": {
        "request_id": line.request_id, "deployment": line.deployment, "time": line.time.isoformat(),
        "status": line.status, "outputs": line.outputs, "rating": feedback.rating, "thumbs": feedback.thumbs,
        "comment": feedback.comment}}


def export_candidates(blobs: BlobStore, production_log: ProductionLog, use_case: str, endpoint: str,
                      start: datetime, end: datetime, *, max_rating: int = 2) -> tuple[str | None, int]:
    """Write the badly rated lines served from `start` to `end`; returns the blob name (None when there were
    none) and the row count. The latest rating of a request counts."""
    latest: dict[str, FeedbackRecord] = {}
    for record in load_feedback(blobs, use_case, endpoint):  # oldest first: later ratings win
        latest[record.request_id] = record
    bad = {request_id: record for request_id, record in latest.items() if is_bad(record, max_rating)}
    rows = [candidate_row(line, bad[line.request_id]) for line in production_log.lines(use_case, endpoint, start, end)
            if line.request_id in bad and line.deployment == bad[line.request_id].deployment]
    if not rows:
        return None, 0
    name = candidate_dataset_name(use_case, endpoint, end)
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    blobs.write(CANDIDATES, name, data, content_type="application/jsonl")
    return name, len(rows)
