"""RemoteFlowRunner on Azure ML (promptflow-azure): one prompt flow batch run per RunSpec, on Azure ML compute.

- Submission builds the SDK's own `Run` entity and calls `pf.runs.create_or_update(run=..., stream=False)`.
  `PFClient.run` does exactly that, except that it builds the Run without `resources` (checked in 1.18.5's
  _pf_client.py), so a serverless VM size or a compute could not be chosen through it.
- Data: spec.rows are already-mapped flow inputs. They go to a temporary JSONL (uploaded by the SDK during the
  call) with an identity column mapping `{name: "${data.name}"}`. No line_number column is added: the SDK's
  `get_details` indexes its DataFrame by `outputs.line_number`, the line's position in the data file, which maps
  back through spec.line_numbers.
- Connections: in Azure ML the flow's connections are workspace connections, looked up by the names in the flow
  (the same names as the ConnectionSpecs). No `connections=` override is sent: an override only renames a node's
  connection or deployment, and secrets must never leave in a run's arguments — the workspace holds them.
- Compute: serverless by default (Azure ML picks a VM size unless AZUREML_PF_INSTANCE_TYPE names one); or the
  compute session on a compute instance (AZUREML_PF_COMPUTE); or a named runtime (AZUREML_PF_RUNTIME).
- Limits: promptflow's batch engine reads PF_LINE_TIMEOUT_SEC and PF_WORKER_COUNT from the environment; the run's
  `environment_variables` set them on the compute.
- Names: Azure ML run ids allow letters, digits, `_` and `-`; spec.run_id has dots, so the name is the id with
  other characters replaced plus a short hash of the original id (two ids never share a name). The readable id is
  the display name and a tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.experiments.remote_runner import RemoteRunStatus
from shared.experiments.results import LineResult, RunResult
from shared.experiments.runner import ConnectionSpec, ExecutionLimits, RunSpec
from shared.redaction import redact_text

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from pandas import DataFrame
    from promptflow.azure import PFClient

    from shared.settings import Settings

log = logging.getLogger(__name__)

# Run statuses of promptflow._sdk._constants.RunStatus (strings, so importing this module stays light).
COMPLETED = "Completed"
ENDED_WITHOUT_RESULTS = {"Failed": "failed", "Canceled": "was canceled", "CancelRequested": "is being canceled"}
STILL_GOING = frozenset({"Queued", "NotStarted", "Preparing", "Provisioning", "Starting", "Running", "Finalizing",
                         "Unapproved", "NotResponding", "Pausing", "Paused"})
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
MAX_NAME = 255
LINE_NUMBER_INDEX = "outputs.line_number"


def azureml_run_name(run_id: str) -> str:
    """A stable Azure ML run name for one of our run ids: same id, same name (that is what makes submit idempotent)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    readable = _NAME_UNSAFE.sub("_", run_id).strip("_-") or "run"
    return f"{readable[:MAX_NAME - len(digest) - 1]}_{digest}"


@dataclass(frozen=True)
class AzureMLCompute:
    instance_type: str | None = None  # serverless VM size; None lets Azure ML choose
    compute: str | None = None  # a compute instance for the compute session
    runtime: str | None = None  # a named runtime; the service ignores resources then

    def resources(self) -> dict[str, str] | None:
        chosen = {key: value for key, value in (("instance_type", self.instance_type), ("compute", self.compute))
                  if value}
        return chosen or None

    def describe(self) -> str:
        if self.runtime:
            return f"runtime {self.runtime}"
        if self.compute:
            return f"compute {self.compute}"
        return f"serverless {self.instance_type or '(size chosen by Azure ML)'}"


def promptflow_azure() -> types.ModuleType:
    """Import promptflow.azure. Version 1.18.5 imports DatastoreType from azure.ai.ml._restclient.v2022_10_01, which
    azure-ai-ml 1.33 removed (microsoft/promptflow#4176); when it is missing, that one name is aliased to the same
    enum of the current client, so the pinned azure-ai-ml stays. Once either side is fixed this does nothing."""
    try:
        import azure.ai.ml._restclient.v2022_10_01.models  # noqa: F401  # pyright: ignore[reportMissingImports]
    except ModuleNotFoundError:
        from azure.ai.ml._restclient.arm_ml_service import models as current

        package = types.ModuleType("azure.ai.ml._restclient.v2022_10_01")
        models = types.ModuleType("azure.ai.ml._restclient.v2022_10_01.models")
        models.DatastoreType = current.DatastoreType  # type: ignore[attr-defined]
        package.models = models  # type: ignore[attr-defined]
        sys.modules.setdefault(package.__name__, package)
        sys.modules.setdefault(models.__name__, models)
    import promptflow.azure

    return promptflow.azure


class AzureMLFlowRunner:
    def __init__(self, client_factory: Callable[[], PFClient], compute: AzureMLCompute | None = None) -> None:
        # PFClient reads the workspace when it is built: only when a run actually goes to Azure ML.
        self._client_factory = client_factory
        self._client: PFClient | None = None
        self._compute = compute or AzureMLCompute()

    @property
    def _pf(self) -> PFClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    # --- submit -------------------------------------------------------------------------------------------------

    def submit(self, spec: RunSpec, connections: Sequence[ConnectionSpec], limits: ExecutionLimits) -> str:
        name = azureml_run_name(spec.run_id)
        if spec.line_numbers is not None and len(spec.line_numbers) != len(spec.rows):
            raise ValueError(f"run {spec.run_id}: {len(spec.line_numbers)} line numbers for {len(spec.rows)} rows")
        if not spec.rows:
            raise ValueError(f"run {spec.run_id}: no rows to run")
        if self._existing(name) is not None:
            log.info("Azure ML run %s for %s exists already; not submitted again", name, spec.run_id)
            return name
        from promptflow.entities import Run

        with tempfile.TemporaryDirectory(prefix="genaiops-aml-") as scratch:
            data = Path(scratch) / f"{_NAME_UNSAFE.sub('_', spec.dataset) or 'data'}.jsonl"
            columns = _write_jsonl(data, spec.rows)
            run = Run(
                flow=spec.flow_dir.resolve(), data=str(data), name=name, display_name=spec.run_id,
                column_mapping={column: f"${{data.{column}}}" for column in columns},
                description=f"GenAIOps {spec.kind} run of {spec.flow} on {spec.dataset}",
                tags=_tags(spec),  # type: ignore[arg-type]  # promptflow annotates a list of dicts; it sends a dict
                environment_variables={"PF_LINE_TIMEOUT_SEC": str(limits.line_timeout_seconds),
                                       "PF_WORKER_COUNT": str(limits.concurrency)},
                resources=self._compute.resources(),
            )
            runtime = {"runtime": self._compute.runtime} if self._compute.runtime else {}
            try:
                self._pf.runs.create_or_update(run=run, stream=False, **runtime)
            except Exception:
                # Two submits of one run racing: the loser's create fails, the run exists — that is success.
                if self._existing(name) is not None:
                    log.info("Azure ML run %s for %s was created concurrently", name, spec.run_id)
                    return name
                raise
        log.info("Submitted Azure ML run %s for %s (%d lines, %s; workspace connections: %s)", name, spec.run_id,
                 len(spec.rows), self._compute.describe(), ", ".join(c.name for c in connections) or "none")
        return name

    def _existing(self, name: str) -> Any | None:
        from promptflow._sdk._errors import RunNotFoundError

        try:
            return self._pf.runs.get(run=name)
        except RunNotFoundError:
            return None

    # --- status -------------------------------------------------------------------------------------------------

    def status(self, run_name: str) -> RemoteRunStatus:
        run = self._existing(run_name)
        if run is None:
            return RemoteRunStatus(state="failed", message=f"Azure ML run {run_name} not found")
        state = str(run.status)
        if state == COMPLETED:
            return RemoteRunStatus(state="completed")
        if state in ENDED_WITHOUT_RESULTS:
            return RemoteRunStatus(state="failed", message=_run_error(run))
        if state not in STILL_GOING:  # a status this SDK did not know: keep checking, but say so
            return RemoteRunStatus(state="running", message=f"Azure ML status {state!r} not recognised")
        return RemoteRunStatus(state="running")

    # --- collect ------------------------------------------------------------------------------------------------

    def collect(self, spec: RunSpec, run_name: str) -> RunResult:
        run = self._pf.runs.get(run=run_name)
        started, duration = _timing(run)
        result = RunResult(run_id=spec.run_id, kind=spec.kind, flow=spec.flow, dataset=spec.dataset,
                           variant=spec.variant, hyperparameters=spec.hyperparameters, evaluator=spec.evaluator,
                           parent_run_id=spec.parent_run_id, status="completed", started_at=started,
                           duration_seconds=duration)
        if str(run.status) != COMPLETED:
            return result.model_copy(update={"status": "failed", "error": _run_error(run)})
        details = self._pf.runs.get_details(run=run_name, all_results=True)  # default is the first 100 lines
        where = getattr(run, "_portal_url", None) or f"Azure ML run {run_name}"
        lines = lines_from_details(details, spec, failed_line=f"line failed in Azure ML; its error: {where}")
        metrics = _numbers(self._pf.runs.get_metrics(run=run_name)) if spec.kind == "evaluation" else {}
        return result.model_copy(update={"lines": lines, "metrics": metrics})


def lines_from_details(details: DataFrame, spec: RunSpec, *, failed_line: str) -> list[LineResult]:
    """One LineResult per line of the spec. get_details gives no per-line error: a failed line is a row whose
    outputs are all empty (the SDK pads failed lines with None), or a line missing from the frame."""
    numbers = spec.line_numbers if spec.line_numbers is not None else list(range(len(spec.rows)))
    inputs = [column for column in details.columns if column.startswith("inputs.")]
    outputs = [column for column in details.columns if column.startswith("outputs.") and column != LINE_NUMBER_INDEX]
    positions = (details.index if details.index.name == LINE_NUMBER_INDEX else details[LINE_NUMBER_INDEX]
                 if LINE_NUMBER_INDEX in details.columns else range(len(details)))
    # The SDK pads failed lines with None, so pandas turns an int output column into floats (4 -> 4.0); an
    # evaluator comparing "4.0" with "4" would score it wrong. Such a column's whole numbers go back to ints.
    padded = {column for column in outputs if details[column].dtype.kind == "f" and bool(details[column].isna().any())
              and bool((details[column].dropna() % 1).eq(0).all())}
    found: dict[int, LineResult] = {}
    for index, (_, row) in zip(positions, details.iterrows(), strict=True):
        position = int(index)
        if not 0 <= position < len(numbers):
            log.warning("Azure ML returned line %s, beyond the %d lines of %s", position, len(numbers), spec.run_id)
            continue
        values = {column.removeprefix("outputs."): _plain(row[column], whole=column in padded) for column in outputs}
        ok = any(value is not None for value in values.values())
        found[position] = LineResult(
            line_number=numbers[position], duration_ms=0.0,  # get_details has no per-line timings
            inputs={column.removeprefix("inputs."): _plain(row[column]) for column in inputs} or spec.rows[position],
            outputs=values if ok else None, error=None if ok else failed_line)
    return [found.get(position) or LineResult(line_number=numbers[position], inputs=spec.rows[position],
                                              error="no result from Azure ML for this line", duration_ms=0.0)
            for position in range(len(numbers))]


def azureml_runner_from_settings(settings: Settings, credential: TokenCredential) -> AzureMLFlowRunner:
    missing = [name for name, value in (("AZURE_SUBSCRIPTION_ID", settings.azure_subscription_id),
                                        ("AZURE_RESOURCE_GROUP", settings.azure_resource_group),
                                        ("AZUREML_WORKSPACE_NAME", settings.azureml_workspace_name)) if not value]
    if missing:
        raise RuntimeError(f"the Azure ML runner needs {', '.join(missing)}")
    compute = AzureMLCompute(instance_type=settings.azureml_pf_instance_type, compute=settings.azureml_pf_compute,
                             runtime=settings.azureml_pf_runtime)

    def client() -> PFClient:
        return promptflow_azure().PFClient(credential=credential, subscription_id=settings.azure_subscription_id,
                                           resource_group_name=settings.azure_resource_group,
                                           workspace_name=settings.azureml_workspace_name)

    return AzureMLFlowRunner(client, compute)


# --- helpers ----------------------------------------------------------------------------------------------------

def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}  # ordered union of the rows' keys
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            columns.update(dict.fromkeys(row))
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return list(columns)


def _tags(spec: RunSpec) -> dict[str, str]:
    tags = {"genaiops.run_id": spec.run_id, "genaiops.kind": spec.kind, "genaiops.flow": spec.flow,
            "genaiops.dataset": spec.dataset}
    if spec.parent_run_id:
        tags["genaiops.parent_run_id"] = spec.parent_run_id
    return tags


def _run_error(run: Any) -> str:
    state = str(run.status)
    error = getattr(run, "_error", None)  # run history's error: {"error": {"code", "message"}} or flat
    if isinstance(error, dict):
        nested = error.get("error")
        inner = nested if isinstance(nested, dict) else error
        text = inner.get("message") or inner.get("code") or json.dumps(inner, default=str)
        message = f"Azure ML run {run.name} {ENDED_WITHOUT_RESULTS.get(state, state)}: {text}"
    elif error:
        message = f"Azure ML run {run.name} {ENDED_WITHOUT_RESULTS.get(state, state)}: {error}"
    else:
        message = f"Azure ML run {run.name} {ENDED_WITHOUT_RESULTS.get(state, f'ended with status {state}')}"
    return redact_text(message)[:2000]


def _timing(run: Any) -> tuple[datetime, float]:
    start = getattr(run, "_start_time", None) or getattr(run, "_created_on", None)
    end = getattr(run, "_end_time", None)
    started = start if isinstance(start, datetime) else datetime.now(UTC)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    if isinstance(end, datetime):
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        return started, max((end - started).total_seconds(), 0.0)
    return started, 0.0


def _plain(value: Any, *, whole: bool = False) -> Any:
    """pandas' cell values as JSON values: NaN (an empty cell in a numeric column) is None, numpy scalars are
    Python's, and with `whole` a float that was an int before padding is an int again."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if whole and value.is_integer():
            return int(value)
    return value


def _numbers(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {str(name): float(value) for name, value in (metrics or {}).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}
