"""Smoke tests of a deployment through any Deployer's ScoringTarget, before it gets traffic.

1. Readiness: the use case's sample request is sent until the deployment answers at all — connection errors and
   404/408/429/502/503/504 mean "not up yet" and are retried with backoff, bounded by readiness_timeout_seconds.
2. Checks: the sample request (`flows/<use_case>/sample-request.json`) plus `samples` rows drawn (seeded, so a
   re-run sends the same rows) from the use case's standard datasets, each mapped to flow inputs as the experiment
   maps them. Every answer must be 200, a JSON object with exactly the flow's outputs (flow.dag.yaml `outputs`,
   minus evaluation-only ones; types checked where declared), within latency_budget_ms.

The report goes to `reports/{use_case}/deployments/{endpoint}/{deployment}/smoke.json`, passed or not.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from shared.blob_layout import REPORTS, smoke_report_name
from shared.deployment.port import DEPLOYMENT_HEADER, Deployer, ScoringTarget, SmokeConfig
from shared.experiments.config import ExperimentConfig
from shared.experiments.datasets import load_dataset
from shared.experiments.mappings import default_mapping, resolve_inputs
from shared.experiments.variants import FlowVariantsError, flow_document, flow_inputs
from shared.ports import BlobStore, Clock
from shared.redaction import redact_text

SAMPLE_REQUEST_FILE = "sample-request.json"
NOT_READY_STATUSES = frozenset({404, 408, 429, 502, 503, 504})
# promptflow's declared output types -> the JSON types an answer may carry for them.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "int": (int,), "double": (int, float), "bool": (bool,), "list": (list,), "object": (dict,),
}


class SmokeError(ValueError):
    """The smoke test cannot even be prepared (no flow file, unreadable sample request)."""


class SmokeRequest(BaseModel):
    label: str = Field(description="where the inputs came from: sample-request.json or <dataset>#<line>")
    inputs: dict[str, Any]


class SmokeCheck(BaseModel):
    label: str
    passed: bool
    status: int | None = None
    latency_ms: float | None = None
    request_id: str | None = None
    served_by: str | None = None
    problems: list[str] = []


class SmokeReport(BaseModel):
    use_case: str
    endpoint: str
    deployment: str
    passed: bool
    started_at: datetime
    finished_at: datetime
    ready: bool
    readiness_attempts: int
    readiness_seconds: float
    latency_budget_ms: int
    expected_outputs: dict[str, str | None]
    checks: list[SmokeCheck]
    failures: list[str]
    latencies_ms: list[float]


class HttpAnswer(BaseModel):
    status: int | None = Field(description="None: no HTTP answer at all (refused, reset, timed out)")
    body: bytes = b""
    headers: dict[str, str] = {}
    error: str | None = None


Transport = Callable[[str, bytes, Mapping[str, str], float], HttpAnswer]


def urllib_transport(url: str, body: bytes, headers: Mapping[str, str], timeout_seconds: float) -> HttpAnswer:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            return HttpAnswer(status=response.status, body=response.read(),
                              headers={k.lower(): v for k, v in response.headers.items()})
    except urllib.error.HTTPError as answer:
        with answer:
            return HttpAnswer(status=answer.code, body=answer.read(),
                              headers={k.lower(): v for k, v in answer.headers.items()})
    except (OSError, urllib.error.URLError) as failure:  # refused, reset, timed out
        return HttpAnswer(status=None, error=str(getattr(failure, "reason", failure)))


# --- what to send and what to expect -------------------------------------------------------------------------------


T = TypeVar("T")


def _read_flow(reader: Callable[[Path], T], flow_dir: Path) -> T:
    """A smoke test of a folder that holds no flow is a SmokeError, whatever part of the flow is read."""
    try:
        return reader(flow_dir)
    except FlowVariantsError as missing:
        raise SmokeError(str(missing)) from None


def expected_outputs(flow_dir: Path) -> dict[str, str | None]:
    """The outputs an answer carries: name -> declared type (None: not declared). Evaluation-only outputs are
    left out, as the serving app leaves them out. Empty for a flow declaring none (e.g. a flex flow)."""
    outputs = _read_flow(flow_document, flow_dir).get("outputs") or {}
    expected: dict[str, str | None] = {}
    for name, written in outputs.items() if isinstance(outputs, dict) else ():
        spec = written if isinstance(written, dict) else {}
        if spec.get("evaluation_only"):
            continue
        expected[str(name)] = str(spec["type"]) if spec.get("type") else None
    return expected


def smoke_requests(use_case_dir: Path, config: ExperimentConfig, flow_dir: Path, blobs: BlobStore, samples: int,
                   seed: int = 0) -> list[SmokeRequest]:
    """sample-request.json (when the use case has one), then `samples` rows drawn from the standard datasets."""
    requests: list[SmokeRequest] = []
    sample_file = Path(use_case_dir) / SAMPLE_REQUEST_FILE
    if sample_file.is_file():
        try:
            sample = json.loads(sample_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as bad:
            raise SmokeError(f"{sample_file}: not valid JSON: {bad}") from None
        if not isinstance(sample, dict):
            raise SmokeError(f"{sample_file}: must be a JSON object of flow inputs")
        requests.append(SmokeRequest(label=SAMPLE_REQUEST_FILE, inputs=sample))
    input_names = _read_flow(flow_inputs, flow_dir)
    pool: list[SmokeRequest] = []
    for dataset in config.datasets:
        rows = load_dataset(dataset, blobs, {}).rows
        for line, row in enumerate(rows):
            mapping = dataset.mappings or default_mapping(input_names, row)
            pool.append(SmokeRequest(label=f"{dataset.name}#{line}", inputs=resolve_inputs(mapping, row)))
    rng = random.Random(seed)
    requests.extend(rng.sample(pool, min(samples, len(pool))))
    if not requests:
        raise SmokeError(f"{use_case_dir}: nothing to send: no {SAMPLE_REQUEST_FILE} and no dataset rows")
    return requests


def output_problems(answer: Any, expected: Mapping[str, str | None]) -> list[str]:
    """How an answer differs from the flow's declared outputs; [] when it matches."""
    if not isinstance(answer, dict):
        return [f"answer is a {type(answer).__name__}, not a JSON object of outputs"]
    if not expected:
        return []
    problems = [f"output {name!r} missing" for name in expected if name not in answer]
    problems += [f"unexpected output {name!r}" for name in answer if name not in expected]
    for name, declared in expected.items():
        if name not in answer or declared not in _JSON_TYPES:
            continue
        value = answer[name]
        allowed = _JSON_TYPES[declared]
        if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
            problems.append(f"output {name!r} should be {declared}, got {type(value).__name__}")
    return problems


# --- running it ----------------------------------------------------------------------------------------------------


class SmokeTester:
    def __init__(self, blobs: BlobStore, clock: Clock, *, transport: Transport = urllib_transport,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic,
                 max_backoff_seconds: float = 5.0) -> None:
        self.blobs = blobs
        self.clock = clock
        self.transport = transport
        self.sleep = sleep
        self.monotonic = monotonic
        self.max_backoff_seconds = max_backoff_seconds

    def run(self, target: ScoringTarget, requests: Sequence[SmokeRequest], expected: Mapping[str, str | None],
            config: SmokeConfig, *, use_case: str, endpoint: str, deployment: str) -> SmokeReport:
        """Wait for readiness, send every request, check every answer, and write the report."""
        started_at = self.clock.now()
        headers = target.http_headers()
        request_timeout = max(5.0, 2 * config.latency_budget_ms / 1000)  # a hung server fails a check, not the run
        ready, attempts, waited = self._wait_ready(target.url, headers, requests[0], config, request_timeout)
        checks: list[SmokeCheck] = []
        failures: list[str] = []
        if not ready:
            failures.append(f"not ready after {attempts} attempt(s) in {waited:.0f} s "
                            f"(readiness_timeout_seconds = {config.readiness_timeout_seconds})")
        else:
            for request in requests:
                check = self._check(target.url, headers, request, expected, config, request_timeout)
                checks.append(check)
                failures += [f"{check.label}: {problem}" for problem in check.problems]
        report = SmokeReport(
            use_case=use_case, endpoint=endpoint, deployment=deployment, passed=ready and not failures,
            started_at=started_at, finished_at=self.clock.now(), ready=ready, readiness_attempts=attempts,
            readiness_seconds=round(waited, 3), latency_budget_ms=config.latency_budget_ms,
            expected_outputs=dict(expected), checks=checks, failures=failures,
            latencies_ms=[c.latency_ms for c in checks if c.latency_ms is not None],
        )
        self.blobs.write(REPORTS, smoke_report_name(use_case, endpoint, deployment),
                         report.model_dump_json(indent=2).encode())
        return report

    def _wait_ready(self, url: str, headers: Mapping[str, str], probe: SmokeRequest, config: SmokeConfig,
                    request_timeout: float) -> tuple[bool, int, float]:
        start = self.monotonic()
        deadline = start + config.readiness_timeout_seconds
        body = json.dumps(probe.inputs).encode()
        attempts, backoff = 0, 0.5
        while True:
            attempts += 1
            answer = self.transport(url, body, headers, min(request_timeout, max(1.0, deadline - self.monotonic())))
            if answer.status is not None and answer.status not in NOT_READY_STATUSES:
                return True, attempts, self.monotonic() - start
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return False, attempts, self.monotonic() - start
            self.sleep(min(backoff, remaining))
            backoff = min(backoff * 2, self.max_backoff_seconds)

    def _check(self, url: str, headers: Mapping[str, str], request: SmokeRequest,
               expected: Mapping[str, str | None], config: SmokeConfig, request_timeout: float) -> SmokeCheck:
        started = self.monotonic()
        answer = self.transport(url, json.dumps(request.inputs).encode(), headers, request_timeout)
        latency_ms = round((self.monotonic() - started) * 1000, 3)
        check = SmokeCheck(label=request.label, passed=False, status=answer.status, latency_ms=latency_ms,
                           request_id=answer.headers.get("x-request-id"),
                           served_by=answer.headers.get("x-served-by") or answer.headers.get(DEPLOYMENT_HEADER))
        if answer.status is None:
            check.problems.append(f"no answer: {redact_text(answer.error or 'connection failed')}")
        elif answer.status != 200:
            check.problems.append(f"status {answer.status}: {redact_text(answer.body[:300].decode(errors='replace'))}")
        else:
            try:
                check.problems += output_problems(json.loads(answer.body), expected)
            except (UnicodeDecodeError, json.JSONDecodeError):
                check.problems.append("answer is not JSON")
        if latency_ms > config.latency_budget_ms:
            check.problems.append(f"latency {latency_ms:.0f} ms over the budget of {config.latency_budget_ms} ms")
        check.passed = not check.problems
        return check




def smoke_test_deployment(deployer: Deployer, tester: SmokeTester, *, use_case: str, use_case_dir: Path,
                          config: ExperimentConfig, flow_dir: Path, endpoint: str, deployment: str,
                          smoke: SmokeConfig, seed: int = 0) -> SmokeReport:
    """The whole smoke test of one deployment, pinned to it (it may have 0 % of the traffic yet)."""
    target = deployer.scoring_request(endpoint, deployment)
    requests = smoke_requests(use_case_dir, config, flow_dir, tester.blobs, smoke.samples, seed)
    return tester.run(target, requests, expected_outputs(flow_dir), smoke, use_case=use_case, endpoint=endpoint,
                      deployment=deployment)
