"""Candidate datasets from production, asked for by a person: `genaiops candidates export` and
POST /api/candidates/{use_case} both call `export_candidate_dataset` — the use case's endpoint and production log
from its configuration, the badly rated lines of the look-back written to datasets-candidates/
(shared/monitoring/candidates.py).

Over HTTP (`export_requested`): the body is CandidateFilters as JSON (none: the defaults). With an Idempotency-Key
header the export runs once per (use case, key), on the idempotency store the bus uses: a retried request gets the
first one's answer (`replayed`), the same key with other filters 422, a retry while the first still runs 409.
Without the header each request is a new export up to its own time (`until`, which names the file): nothing is
overwritten but by a request in the same second with the same filters, which writes the same lines.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from pydantic import BaseModel, Field

from shared.blob_layout import CANDIDATES
from shared.deployment.port import DeploymentError
from shared.experiments.catalog import find_use_cases
from shared.experiments.config import ExperimentConfigError, load_experiment
from shared.idempotency import AlreadyInProgress, IdempotencyStore, PayloadMismatch
from shared.json_body import InvalidBody, parse_object
from shared.monitoring.candidates import CandidateFilters, InvalidWindow, export_candidates
from shared.ports import BlobStore
from shared.services.deployment_settings import deployment_config
from shared.services.monitoring import LogFor
from shared.settings import Settings

MAX_BODY_BYTES = 4096
_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class CandidateExport(BaseModel):
    use_case: str
    endpoint: str
    since: datetime
    until: datetime
    max_rating: int
    lines: int = Field(ge=0)
    blob: str | None = Field(description="datasets-candidates/{use_case}/{endpoint}-{until}.jsonl; None: no line")
    replayed: bool = False


class UnknownUseCase(LookupError):
    pass


class ExportRejected(ValueError):
    """An export request refused; `status` is the HTTP answer (400, 404, 409, 413, 422, 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def export_candidate_dataset(use_case: str, filters: CandidateFilters, *, blobs: BlobStore, settings: Settings,
                             now: datetime, log_for: LogFor) -> CandidateExport:
    """UnknownUseCase, ExperimentConfigError (its files), DeploymentError (no production log, or it cannot be read
    now), InvalidWindow (a `since` not in the past)."""
    if use_case not in find_use_cases(settings.flows_dir):  # a listed folder name: no path is built from the URL's text
        raise UnknownUseCase(f"no use case {use_case[:100]!r}")
    environment = settings.environment
    config = load_experiment(settings.flows_dir / use_case, environment, local=settings.local_stack)
    target = deployment_config(config, environment, settings.app_settings)
    production_log = log_for(target)
    if production_log is None:
        raise DeploymentError(f"no production log for target {target.target}")
    start, end = filters.window(now)
    name, lines = export_candidates(blobs, production_log, use_case, target.endpoint_name, start, end,
                                    max_rating=filters.max_rating,
                                    mask_fields=config.monitoring.mask_fields if config.monitoring else ())
    return CandidateExport(use_case=use_case, endpoint=target.endpoint_name, since=start, until=end,
                           max_rating=filters.max_rating, lines=lines, blob=f"{CANDIDATES}/{name}" if name else None)


def export_requested(use_case: str, body: bytes, idempotency_key: str | None, *, blobs: BlobStore,
                     idempotency: IdempotencyStore, settings: Settings, now: datetime,
                     log_for: LogFor) -> CandidateExport:
    """The HTTP request's export; ExportRejected with the status to answer."""
    if len(body) > MAX_BODY_BYTES:
        raise ExportRejected(413, f"the body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    if idempotency_key is not None and not _KEY.fullmatch(idempotency_key):
        raise ExportRejected(400, "Idempotency-Key must be 1-128 letters, digits or ._:-")
    try:
        filters = parse_object(body, CandidateFilters, "the export's filters", empty_is_default=True)
    except InvalidBody as bad:
        raise ExportRejected(400, str(bad)) from None

    def export() -> dict[str, object]:
        return export_candidate_dataset(use_case, filters, blobs=blobs, settings=settings, now=now,
                                        log_for=log_for).model_dump(mode="json")

    try:
        if idempotency_key is None:
            return CandidateExport.model_validate(export())
        outcome = idempotency.run_once("candidate-export", _sha256(f"{use_case}|{idempotency_key}"), export,
                                       payload_hash="sha256:" + _sha256(filters.model_dump_json()))
        return CandidateExport.model_validate({**outcome.result, "replayed": outcome.replayed})
    except UnknownUseCase as unknown:
        raise ExportRejected(404, str(unknown)) from None
    except ExperimentConfigError as broken:  # the app's own files: not the caller's fault
        raise ExportRejected(503, f"use case {use_case}'s experiment.yaml does not load: {broken}") from None
    except DeploymentError as unavailable:  # TelemetryError included
        raise ExportRejected(503, f"the production log cannot be read now: {unavailable}") from None
    except AlreadyInProgress:
        raise ExportRejected(409, "an export with this Idempotency-Key is running; retry") from None
    except PayloadMismatch:
        raise ExportRejected(422, "this Idempotency-Key was used for an export with other filters") from None
    except InvalidWindow as bad:
        raise ExportRejected(400, str(bad)) from None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
