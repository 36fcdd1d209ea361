"""Experiment reports: results.csv (every line), metrics.csv, summary.html (verdict, tables, charts) and
experiment.json, written to reports/{use_case}/{experiment_id}/."""

from shared.experiments.scoring import better_direction
from shared.reports.writer import ReportLocations, read_experiment_json, write_experiment_reports

__all__ = ["ReportLocations", "better_direction", "read_experiment_json", "write_experiment_reports"]
