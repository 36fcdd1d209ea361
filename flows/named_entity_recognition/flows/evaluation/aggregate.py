"""Aggregate per-line matches into the run's metrics."""

from promptflow.core import log_metric, tool


@tool
def aggregate(matches: list[dict]) -> dict:
    count = len(matches) or 1
    exact = round(sum(m["exact"] for m in matches) / count, 4)
    partial = round(sum(m["partial"] for m in matches) / count, 4)
    log_metric("exact_match_rate", exact)
    log_metric("partial_match_rate", partial)
    return {"exact_match_rate": exact, "partial_match_rate": partial}
