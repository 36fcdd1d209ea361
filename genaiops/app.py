"""The `genaiops` console command (typer). Each command is thin: it reads the settings, calls one function of this
package or of shared/, and turns the outcome into output and an exit code a pipeline can act on:
0 done, 1 error, 2 usage, 3 a failing event (experiment.failed, gate.failed, ...), 4 time-out, 5 a message of the
run was dead-lettered (it can never be handled: the run is stuck).

Pipelines use `publish` and `wait` (.azure-pipelines/templates/steps/publish-and-wait.yml); people the rest."""

from __future__ import annotations

import json
import sys
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Column, Table

from genaiops import approvals as approval_client
from genaiops.describe import line
from genaiops.follow import follow
from genaiops.follow import wait as follow_one
from genaiops.settings_file import load_settings, settings_path

if TYPE_CHECKING:  # shared/ is imported once the settings file is loaded, by the commands that need it
    from shared.adapters.azure_blob import AzureBlobStore
    from shared.approvals.store import ApprovalStore
    from shared.audit import EventJournal
    from shared.settings import Settings

HELP = ("GenAIOps Functions from the command line: upload a dataset and follow it, publish and wait for events, run "
        "an experiment here, decide approvals, open reports. Connections: the environment, then "
        ".localstack/local.settings.json (or --settings). Exit codes: 0 done, 1 error, 2 usage, 3 a failing event, "
        "4 time-out, 5 a message of the run was dead-lettered.")
app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
approvals_app = typer.Typer(help="Approval requests: list, show, approve, reject.", no_args_is_help=True)
report_app = typer.Typer(help="Experiment reports.", no_args_is_help=True)
app.add_typer(approvals_app, name="approvals")
app.add_typer(report_app, name="report")
candidates_app = typer.Typer(help="Candidate datasets from production.", no_args_is_help=True)
app.add_typer(candidates_app, name="candidates")
console = Console(soft_wrap=True)  # ids, paths and URLs stay whole on one line, for people and scripts
errors = Console(stderr=True, soft_wrap=True)

# What ends a run that started with an upload or a pipeline event, as the pipelines' `wait` steps use it.
FAILURES = ("experiment.failed", "gate.failed", "approval.rejected", "approval.expired", "smoke.failed",
            "deployment.rolled_back")
# What ends it well: the chosen version deployed and verified, or already the one serving.
DEPLOYED = ("deployment.verified", "deployment.unchanged")
EXIT_ERROR = 1


@app.callback()
def _settings(settings: Annotated[Path | None, typer.Option(
        help="local.settings.json to read connections from (default: $GENAIOPS_SETTINGS, else "
             ".localstack/local.settings.json when the local stack wrote one); the environment wins")] = None) -> None:
    load_settings(settings_path(settings))


def _settings_obj() -> Settings:
    from shared.settings import get_settings

    return get_settings()


def _blobs() -> AzureBlobStore:
    from shared.adapters.azure_blob import AzureBlobStore, blob_service_client

    return AzureBlobStore(blob_service_client(_settings_obj()))


def _journal() -> EventJournal:
    from shared.audit import EventJournal

    return EventJournal(_blobs())


def _event_types(value: str) -> list[str]:
    from shared.events import event_class

    types = [part.strip() for part in value.split(",") if part.strip()]
    for event_type in types:
        try:
            event_class(event_type)
        except (KeyError, ValueError) as unknown:
            raise typer.BadParameter(f"unknown event type {event_type!r}") from unknown
    return types


def _fail(message: str) -> typer.Exit:
    errors.print(message, style="red", markup=False, highlight=False)
    return typer.Exit(EXIT_ERROR)


@app.command()
def upload(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a .jsonl dataset")],
           use_case: Annotated[str, typer.Option(help="the use case folder it belongs to")],
           name: Annotated[str | None, typer.Option(help="blob file name (default: the file's)")] = None,
           follow_run: Annotated[bool, typer.Option("--follow/--no-follow", help="follow it to its outcome")] = True,
           timeout: Annotated[float, typer.Option(help="seconds to follow")] = 3600) -> None:
    """Upload a dataset to datasets/{use_case}/, print its correlation id and follow it through the lifecycle (to
    deployment.verified, or deployment.unchanged when the chosen version already serves)."""
    from genaiops.datasets import upload as upload_dataset
    from shared.adapters.azure_blob import blob_service_client

    try:
        blob_name, correlation_id = upload_dataset(blob_service_client(_settings_obj()), path, use_case, name)
    except ValueError as bad:
        raise _fail(str(bad)) from bad
    console.print(f"uploaded {path} -> datasets/{blob_name}\ncorrelation id: {correlation_id}", highlight=False)
    if follow_run:
        until = [*DEPLOYED, "gate.passed"] if _settings_obj().environment == "pr" else list(DEPLOYED)
        raise typer.Exit(follow(_journal(), [correlation_id], until=until, fail_on=FAILURES, timeout=timeout,
                                describe=line, console=console).exit_code)


@app.command()
def publish(event_type: Annotated[str, typer.Argument(metavar="TYPE", help="a catalogue event type")],
            payload: Annotated[str, typer.Option(help="the payload as JSON")],
            correlation_id: Annotated[str | None, typer.Option(help="default: a new id")] = None,
            source: str = "cli") -> None:
    """Post one catalogue event to the events queue (journaled first, so `wait` sees it)."""
    from genaiops.bus import publish as publish_event

    _event_types(event_type)
    event = publish_event(_settings_obj(), _journal(), event_type, payload, correlation_id, source)
    console.print_json(json.dumps({"id": event.id, "type": event.type, "correlation_id": event.correlation_id}))


@app.command()
def wait(correlation_id: Annotated[str, typer.Option(help="the run to follow")],
         until: Annotated[str, typer.Option(help="comma-separated event types that mean done")],
         fail_on: Annotated[str, typer.Option(help="comma-separated event types that mean failed")] = ",".join(
             FAILURES),
         timeout: Annotated[float, typer.Option(help="seconds")] = 3600,
         poll: Annotated[float, typer.Option(help="seconds between looks at the journal")] = 2.0) -> None:
    """Follow a run until a wanted event (exit 0), a failing one (exit 3) or a dead letter of the run (exit 5); a
    progress bar while an experiment runs; exit 4 on time-out."""
    result = follow_one(_journal(), correlation_id, until=_event_types(until), fail_on=_event_types(fail_on),
                        timeout=timeout, poll=poll, console=console)
    for failed in result.failed:
        errors.print_json(failed.payload.model_dump_json())
    raise typer.Exit(result.exit_code)


@app.command()
def run(use_case: Annotated[str, typer.Argument(help="a use case folder under the flows directory")],
        env: Annotated[str, typer.Option(help="experiment overlay: local, pr, dev or prod")] = "local") -> None:
    """Run one experiment on this machine, without the bus: same handlers, store and reports as the app."""
    from genaiops.run_here import run_experiment

    outcome = run_experiment(_settings_obj(), use_case, env, on_event=lambda event: console.print(
        line(event), highlight=False, markup=False) if event.type in ("experiment.progressed",
                                                                     "evaluation.completed",
                                                                     "experiment.failed") else None)
    console.print(f"reports: reports/{use_case}/{getattr(outcome.payload, 'experiment_id', '?')}/", highlight=False)
    raise typer.Exit(0 if outcome.type == "evaluation.completed" else 3)


@app.command()
def runs(limit: Annotated[int, typer.Option(help="how many")] = 20) -> None:
    """The most recent runs in the journal (correlation id, last event, when)."""
    from genaiops.runs import recent_runs

    table = Table(Column("correlation id", no_wrap=True), "last event", "at (UTC)", "events")
    for run_line in recent_runs(_blobs(), limit):
        table.add_row(run_line.correlation_id, run_line.last_event, f"{run_line.last_at:%Y-%m-%d %H:%M:%S}",
                      str(run_line.events))
    console.print(table)


@app.command()
def status(correlation_id: Annotated[str, typer.Option(help="the run")]) -> None:
    """Every event of one run, in order."""
    events = _journal().events_for(correlation_id)
    if not events:
        raise _fail(f"no events for {correlation_id}")
    for event in events:
        console.print(line(event), highlight=False, markup=False)


@app.command()
def schema(out: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None) -> None:
    """The event catalogue as JSON Schema."""
    from shared.events.schema import catalogue_schema_json

    text = catalogue_schema_json()
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


def _approval_store() -> ApprovalStore:
    from shared.approvals.store import ApprovalStore

    return ApprovalStore(_blobs())


@approvals_app.command("list")
def approvals_list() -> None:
    """Approval requests waiting for a decision."""
    table = Table(Column("id", no_wrap=True), "use case", "flow version", "approvers", "expires (UTC)")
    for request in approval_client.open_requests(_approval_store()):
        table.add_row(request.approval_id, request.use_case, f"{request.flow_name} v{request.flow_version}",
                      ", ".join(request.approvers), f"{request.expires_at:%Y-%m-%d %H:%M}")
    console.print(table)


@approvals_app.command("show")
def approvals_show(approval_id: str) -> None:
    """One approval request, whole (JSON)."""
    from shared.ports import BlobNotFound

    try:
        console.print_json(_approval_store().get(approval_id).request.model_dump_json())
    except BlobNotFound as missing:
        raise _fail(f"no approval request {approval_id}") from missing


def _decide(approval_id: str, decision: str, user: str | None, token: str | None, comment: str) -> None:
    base_url = _settings_obj().public_base_url.rstrip("/")
    try:
        session = approval_client.signed_in_session(base_url, user=user, token=token)
        body = approval_client.decide(session, base_url, approval_id, decision, comment)
    except approval_client.ApprovalError as refused:
        raise _fail(str(refused)) from refused
    decided = body.get("approval", {})
    console.print(f"{approval_id}: {decided.get('status')} by {decided.get('decided_by')}", highlight=False)


User = Annotated[str | None, typer.Option("--as", help="who decides (local stack sign-in)")]
Token = Annotated[str | None, typer.Option(envvar="GENAIOPS_APPROVER_TOKEN",
                                           help="bearer token for App Service authentication (Azure)")]


@approvals_app.command("approve")
def approvals_approve(approval_id: str, user: User = None, token: Token = None, comment: str = "") -> None:
    """Approve, as a listed approver: the flow version is deployed."""
    _decide(approval_id, "approve", user, token, comment)


@approvals_app.command("reject")
def approvals_reject(approval_id: str, user: User = None, token: Token = None, comment: str = "") -> None:
    """Reject, as a listed approver: the run ends."""
    _decide(approval_id, "reject", user, token, comment)


@report_app.command("open")
def report_open(use_case: str, experiment_id: Annotated[str | None, typer.Argument()] = None,
                out: Annotated[Path, typer.Option(help="where to copy the reports")] = Path("out/reports"),
                browser: Annotated[bool, typer.Option("--browser/--no-browser")] = True) -> None:
    """Copy an experiment's reports (the newest by default) and open summary.html."""
    from genaiops.runs import download_report

    try:
        page = download_report(_blobs(), use_case, experiment_id, out)
    except LookupError as missing:
        raise _fail(str(missing)) from missing
    console.print(str(page), highlight=False)
    if browser:
        webbrowser.open(page.resolve().as_uri())


@candidates_app.command("export")
def candidates_export(use_case: str,
                      days: Annotated[float, typer.Option(help="how far back to look (at most 30)")] = 7,
                      max_rating: Annotated[int, typer.Option(help="ratings up to this are bad (thumbs down is)")] = 2,
                      ) -> None:
    """Export production lines users rated badly to datasets-candidates/ for a person to label (never uploaded
    as a dataset by itself). POST /api/candidates/{use_case} does the same over HTTP."""
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from shared.deployment.port import DeploymentError
    from shared.experiments.config import ExperimentConfigError
    from shared.json_body import validation_problems
    from shared.monitoring.candidates import CandidateFilters
    from shared.services.candidate_export import UnknownUseCase, export_candidate_dataset
    from shared.services.monitoring import production_log_for

    settings, blobs = _settings_obj(), _blobs()
    try:
        filters = CandidateFilters(days=days, max_rating=max_rating)
        log_for = production_log_for(blobs, settings.azureml_data_collector_container_url)
        export = export_candidate_dataset(use_case, filters, blobs=blobs, settings=settings, now=datetime.now(UTC),
                                          log_for=log_for)
    except ValidationError as invalid:
        raise _fail(validation_problems(invalid)) from invalid
    except (UnknownUseCase, ExperimentConfigError, DeploymentError) as unusable:
        raise _fail(str(unusable)) from unusable
    console.print(f"{export.lines} line(s)" + (f" -> {export.blob}" if export.blob else ""), highlight=False)


def main() -> None:
    app()
