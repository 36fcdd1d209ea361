"""`make demo`'s last step: one post-production evaluation. The A/B round's questions went through the router, which
logged each request and answer under production/; the demo asks for the evaluation the use case's schedule would start
(production.evaluation_requested, posted as `genaiops publish` posts it), the local model judges a sample of those
answers (math_coding's `monitoring.evaluation`: flows/math_coding/flows/judge), and the demo prints the judge's score
per deployment and where the production report is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from genaiops.bus import publish
from genaiops.describe import line
from genaiops.follow import EXIT_OK, follow
from localstack.stack import LocalStack
from shared.audit import EventJournal
from shared.blob_layout import REPORTS
from shared.events import Event
from shared.events.monitoring import ProductionDegraded, ProductionEvaluated
from shared.settings import Settings

USE_CASE = "math_coding"
TIMEOUT_SECONDS = 300


def request_evaluation(stack: LocalStack, journal: EventJournal) -> Event:
    """What the schedule's timer posts, for the lines logged up to now."""
    settings = Settings.model_validate(stack.settings())
    payload = {"use_case": USE_CASE, "environment": settings.environment,
               "window_end": datetime.now(UTC).isoformat(timespec="seconds")}
    return publish(settings, journal, "production.evaluation_requested", json.dumps(payload), None, "demo")


def download(storage: BlobServiceClient, report_uri: str, out: Path) -> Path:
    """`reports/<name>` from Azurite to out/<name>."""
    name = report_uri.removeprefix(f"{REPORTS}/")
    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(storage.get_blob_client(REPORTS, name).download_blob().readall())
    return target


@dataclass(frozen=True)
class Judged:
    evaluated: ProductionEvaluated
    page: Path


def evaluate(stack: LocalStack, storage: BlobServiceClient, journal: EventJournal, out: Path) -> Judged | None:
    """Ask for one evaluation, follow it, print the scores and the downloaded report; None when there was no outcome
    (said why)."""
    requested = request_evaluation(stack, journal)
    print(f"\npost-production evaluation of {USE_CASE}: the local model judges a sample of the answers the router "
          "logged ...")
    result = follow(journal, [requested.correlation_id], until={"production.evaluated"}, fail_on=(),
                    timeout=TIMEOUT_SECONDS, describe=line, poll=1)
    evaluated = next((event for event in result.timelines.get(requested.correlation_id, [])
                      if isinstance(event, ProductionEvaluated)), None)
    if result.exit_code != EXIT_OK or evaluated is None:
        print(f"post-production evaluation: no outcome after {TIMEOUT_SECONDS} s (nothing logged to judge?); see "
              f"{stack.state_dir}/host.log")
        return None
    shown = {event.id for event in result.timelines[requested.correlation_id]}
    for event in journal.entries_for(requested.correlation_id):
        if isinstance(event, ProductionDegraded) and event.id not in shown:  # published with production.evaluated
            print(line(event))
    page = download(storage, evaluated.payload.report_uri, out)
    print(f"production report: file://{page} (in Azurite: {evaluated.payload.report_uri})")
    return Judged(evaluated, page)
