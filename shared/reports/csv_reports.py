"""results.csv and metrics.csv: every row, properly quoted by the csv module, UTF-8."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from shared.experiments.results import ExperimentResult
from shared.reports.tables import Redacted, metrics_header, metrics_rows, redacted, results_header, results_rows


def _encode(header: list[str], rows: Iterable[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # excel dialect: RFC 4180 quoting, so newlines and commas in outputs survive
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def results_csv(result: ExperimentResult | Redacted) -> bytes:
    """Every line of every standard run, with inputs, outputs and the per-line scores joined on line_number."""
    safe = redacted(result).result
    header = results_header(safe)
    return _encode(header, results_rows(safe, header))


def metrics_csv(result: ExperimentResult | Redacted) -> bytes:
    """One row per standard run × evaluation run, with the aggregated metrics and the run's totals."""
    safe = redacted(result).result
    header = metrics_header(safe)
    return _encode(header, metrics_rows(safe, header))
