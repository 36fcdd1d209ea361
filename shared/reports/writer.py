"""Write an experiment's reports to blob storage: reports/{use_case}/{experiment_id}/.

Four files, rewritten whole on every call, so a redelivered event just produces the same reports again."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.blob_layout import REPORTS, experiment_prefix
from shared.experiments.results import ExperimentResult
from shared.ports import BlobStore
from shared.redaction import redact
from shared.reports.csv_reports import metrics_csv, results_csv
from shared.reports.html_report import render_summary_html
from shared.reports.tables import Redacted, redacted

SUMMARY_HTML = "summary.html"
RESULTS_CSV = "results.csv"
METRICS_CSV = "metrics.csv"
EXPERIMENT_JSON = "experiment.json"


class ReportLocations(BaseModel):
    container: str
    prefix: str
    summary_html: str
    results_csv: str
    metrics_csv: str
    experiment_json: str


def report_locations(use_case: str, experiment_id: str) -> ReportLocations:
    prefix = experiment_prefix(use_case, experiment_id)
    return ReportLocations(
        container=REPORTS,
        prefix=prefix,
        summary_html=prefix + SUMMARY_HTML,
        results_csv=prefix + RESULTS_CSV,
        metrics_csv=prefix + METRICS_CSV,
        experiment_json=prefix + EXPERIMENT_JSON,
    )


def experiment_json(result: ExperimentResult | Redacted, extra: dict[str, Any] | None = None) -> bytes:
    """The (redacted) result with `extra` beside its fields: `ExperimentResult.model_validate_json` reads it back."""
    document = redacted(result).result.model_dump(mode="json")
    document["extra"] = redact(extra or {})
    return json.dumps(document, indent=2, ensure_ascii=False, default=str).encode("utf-8")


def read_experiment_json(data: bytes) -> tuple[ExperimentResult, dict[str, Any]]:
    """Inverse of experiment_json, for audits and resumes."""
    document = json.loads(data)
    extra = document.pop("extra", {}) or {}
    return ExperimentResult.model_validate(document), extra


def write_experiment_reports(result: ExperimentResult, blobs: BlobStore, extra: dict[str, Any] | None = None,
                             *, generated_at: datetime | None = None) -> ReportLocations:
    """Write experiment.json, results.csv, metrics.csv and summary.html; return where they are.

    summary.html goes last: once it exists, the files it links to exist too."""
    where = report_locations(result.use_case, result.experiment_id)
    safe = redacted(result)  # once, shared by the four files
    blobs.write(REPORTS, where.experiment_json, experiment_json(safe, extra), content_type="application/json")
    blobs.write(REPORTS, where.results_csv, results_csv(safe), content_type="text/csv; charset=utf-8")
    blobs.write(REPORTS, where.metrics_csv, metrics_csv(safe), content_type="text/csv; charset=utf-8")
    page = render_summary_html(safe, extra, generated_at=generated_at, files={
        RESULTS_CSV: RESULTS_CSV, METRICS_CSV: METRICS_CSV, EXPERIMENT_JSON: EXPERIMENT_JSON,
    })
    blobs.write(REPORTS, where.summary_html, page.encode("utf-8"), content_type="text/html; charset=utf-8")
    return where
