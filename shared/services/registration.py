"""Conditional registration: a dataset becomes a new data version, and the gate's chosen flow a new flow version,
only when their content changed (content hashes; the registry compares with its latest version)."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from shared.blob_layout import data_asset_name
from shared.events import DataRegistered, DatasetUploaded, Event, FlowRegistered, GatePassed
from shared.experiments.config import load_experiment
from shared.experiments.datasets import LoadedDataset
from shared.experiments.store import ExperimentStore
from shared.experiments.variants import Combination, materialize
from shared.registry.hashing import directory_hash
from shared.registry.models import FlowVersion
from shared.registry.port import EMPTY_TAGS, Registry
from shared.services.intake import IntakeReport

log = logging.getLogger("genaiops.registration")
# Pull-request experiments answer "is this change good enough?": gate.passed is their outcome (the pr pipeline waits
# for it); registering, approving and deploying happen from dev and prod only.
STOPS_AT_GATE = frozenset({"pr"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def register_flow_if_changed(registry: Registry, *, name: str, flow_dir: Path, properties: Mapping[str, str],
                             tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[FlowVersion, bool]:
    """A new flow version only when the folder's content hash differs from the latest; `properties` are strings:
    metrics, variant, dataset versions, git commit, build id."""
    content_hash = directory_hash(flow_dir)
    version, created = registry.register_flow(name, flow_dir=flow_dir, content_hash=content_hash,
                                              properties=properties, tags=tags)
    log.info("flow %s: %s version %s (%s)", name, "registered" if created else "unchanged, kept", version.version,
             content_hash)
    return version, created


def asset_name(*parts: str) -> str:
    """Registry names allow letters, digits, '.', '_' and '-' only (Azure ML's rule)."""
    return _UNSAFE.sub("-", "-".join(parts)).strip("-.")[:255]


def register_upload(event: DatasetUploaded, report: IntakeReport, registry: Registry) -> DataRegistered:
    """The intake already hashed the upload in one streaming pass; the registry decides if it is new."""
    upload = event.payload
    if report.status != "valid" or report.use_case is None or report.data_name is None or not report.content_hash:
        raise ValueError(f"{report.blob}: only a valid upload in a use case is registered (status {report.status})")
    version, created = registry.register_data(
        report.data_name, source_uri=f"blob://{upload.container}/{upload.blob_name}",
        content_hash=report.content_hash, description=f"{report.rows} rows uploaded to {upload.container}",
        tags={"use_case": report.use_case, "rows": str(report.rows)})
    return event.follow_up(DataRegistered, {"name": version.name, "version": version.version,
                                            "content_hash": report.content_hash, "source": version.source_uri,
                                            "created": created})


def register_datasets(registry: Registry, use_case: str, datasets: Sequence[LoadedDataset]) -> dict[str, str]:
    """Every dataset an experiment used, registered if changed; returns dataset name -> data version."""
    versions = {}
    for data in {d.name: d for d in datasets}.values():
        version, _ = registry.register_data(data_asset_name(use_case, data.name), source_uri=data.source_uri,
                                            content_hash=data.content_hash, tags={"use_case": use_case})
        versions[data.name] = version.version
    return versions


def register_chosen_flow(event: GatePassed, store: ExperimentStore, registry: Registry, *, flows_root: Path,
                         work_root: Path, local: bool) -> list[Event]:
    """Materialize the winning combination (variant baked in, hyperparameters applied) and register it; `local`:
    the app runs on the local stack (Settings.local_stack)."""
    verdict = event.payload
    if verdict.environment in STOPS_AT_GATE:
        log.info("%s experiment %s passed its gate in %s: nothing is registered or deployed from %s",
                 verdict.use_case, verdict.experiment_id, verdict.environment, verdict.environment)
        return []
    result = store.result(verdict.use_case, verdict.experiment_id)
    config = load_experiment(flows_root / verdict.use_case, verdict.environment, local=local)
    combination = Combination(variant=verdict.best_variant, hyperparameters=verdict.best_hyperparameters)
    target = work_root / "register" / event.id
    flow_dir = materialize(config.flow_dir, combination, target)
    properties = {
        "experiment_id": verdict.experiment_id, "environment": verdict.environment,
        "variant": json.dumps(verdict.best_variant, sort_keys=True),
        "hyperparameters": json.dumps(verdict.best_hyperparameters, sort_keys=True),
        **{f"metric.{name}": f"{value:g}" for name, value in verdict.best_metrics.items()},
        **{f"data.{name}": version for name, version in result.decisions.get("data_versions", {}).items()},
        # The commit / build id of the pipeline run that asked, carried in the request (not read back from the journal).
        **result.decisions.get("request", {}).get("build", {}),
    }
    try:
        version, created = register_flow_if_changed(registry, name=asset_name(verdict.use_case), flow_dir=flow_dir,
                                                    properties=properties, tags={"use_case": verdict.use_case})
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return [event.follow_up(FlowRegistered, {
        "use_case": verdict.use_case, "experiment_id": verdict.experiment_id, "name": version.name,
        "version": version.version, "content_hash": version.content_hash, "variant": verdict.best_variant,
        "metrics": verdict.best_metrics, "created": created,
    })]

