"""Which use cases exist under flows/, and which of their datasets an uploaded blob feeds.

A dataset matches an upload when its source is that blob (`blob://<container>/<name>`, so one shared blob can feed
several use cases), or when its source is a local file and the upload is `datasets/<use_case>/<file name>` (an
upload replacing that use case's file). Evaluator datasets count too."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from shared.blob_layout import DATASETS
from shared.experiments.config import EXPERIMENT_FILE, ExperimentConfigError, load_experiment

logger = logging.getLogger(__name__)


def find_use_cases(flows_root: Path) -> list[str]:
    """Folder names directly under flows_root that hold an experiment.yaml, sorted."""
    root = Path(flows_root)
    if not root.is_dir():
        return []
    return sorted(
        entry.name
        for entry in root.iterdir()
        if entry.is_dir() and not entry.name.startswith(".") and (entry / EXPERIMENT_FILE).is_file()
    )


def use_cases_for_blob(
    flows_root: Path, container: str, blob_name: str, environment: str | None
) -> list[tuple[str, str]]:
    """(use case, dataset name) pairs fed by the uploaded blob, sorted and without duplicates.

    A use case whose experiment.yaml does not load is skipped with a warning: one broken use case must not stop
    uploads from reaching the others (its own pipeline reports the error)."""
    blob_name = blob_name.lstrip("/")
    matches: set[tuple[str, str]] = set()
    for use_case in find_use_cases(flows_root):
        try:
            config = load_experiment(Path(flows_root) / use_case, environment)
        except ExperimentConfigError as error:
            logger.warning("use case %s skipped while matching blob %s/%s: %s", use_case, container, blob_name, error)
            continue
        replaced_file = f"{use_case}/"
        for dataset in config.all_datasets():
            if dataset.blob == (container, blob_name) or (
                container == DATASETS
                and dataset.source_kind == "local"
                and blob_name == replaced_file + PurePosixPath(dataset.source_text or "").name
            ):
                matches.add((use_case, dataset.name))
    return sorted(matches)
