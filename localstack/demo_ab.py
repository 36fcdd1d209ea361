"""`make demo`'s A/B round. Once math_coding's first version serves, a person edits one prompt — in the demo's copy
of flows/ under .localstack/ (the host reads it through GENAIOPS_FLOWS_DIR), never the repo's — and re-tests only the
combination that serves. The changed flow is a new version: approved, deployed beside the first at the use case's
configured split (`deployment.traffic`), smoke-tested. Then simulated users ask the test questions through the
endpoint's router and rate each answer (right 5, wrong 1), and the A/B report says whether the versions differ."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml
from azure.storage.blob import BlobServiceClient

from genaiops.datasets import upload as upload_dataset
from localstack.host.keys import read_host_keys
from localstack.stack import LocalStack
from shared.blob_layout import DEPLOYMENTS, REPORTS, deployment_reports_prefix
from shared.events import Event, FlowRegistered
from shared.experiments.config import load_experiment
from shared.feedback.ab_report import ABReport, verdict
from shared.services.deployment_settings import deployment_config

USE_CASE = "math_coding"
PROMPT = Path("flows/standard/solve_direct.jinja2")
# One word of the direct prompt. With the local model (greedy, seed 0) it changes most answers but not the accuracy
# on math_test (0.1 both), so the gate's "no worse than the version serving" lets it through.
BEFORE, AFTER = "You are a precise calculator.", "You are a careful calculator."
QUESTIONS = Path("data/math_test.jsonl")
OVERLAY = "experiment.local.yaml"
RIGHT, WRONG = 5, 1
SENDERS = 2  # the model answers one request at a time; a second sender hides the flow servers' own overhead


def copy_flows(source: Path, target: Path) -> Path:
    """The demo's working copy of the use cases, replaced by the repo's each time the demo starts the stack."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", ".promptflow", ".runs"))
    return target


def host_reads(settings_file: Path, flows: Path) -> bool:
    """Whether the running host's flows are `flows` (a stack started by `make up` reads the repo's flows/)."""
    try:
        values = json.loads(settings_file.read_text())["Values"]
    except (OSError, ValueError, KeyError):
        return False
    return Path(values.get("GENAIOPS_FLOWS_DIR", "")) == flows


def edit_prompt(flows: Path) -> str:
    """The person's change; doing it twice changes nothing more. Returns what changed, for the demo to print."""
    prompt = flows / USE_CASE / PROMPT
    text = prompt.read_text()
    if BEFORE not in text:
        return f"{USE_CASE}/{PROMPT} (changed by an earlier run already)"
    prompt.write_text(text.replace(BEFORE, AFTER))
    return f"{USE_CASE}/{PROMPT}: {BEFORE!r} -> {AFTER!r}"


def retest_only(flows: Path, variant: dict[str, str]) -> None:
    """Narrow the copy's local experiment to the combination that serves: one run instead of every combination."""
    overlay = flows / USE_CASE / OVERLAY
    blocks = yaml.safe_load(overlay.read_text()) or {}
    blocks["variants"] = {"mode": "explicit", "explicit": [variant]}
    overlay.write_text("# The demo's A/B round re-tests only the combination that serves (localstack/demo_ab.py).\n"
                       + yaml.safe_dump(blocks, sort_keys=False))


class SecondRound:
    """Watches the first runs' events; when the use case's first version serves (an event in `served`), makes the
    change and uploads the test questions again. `on_event` returns the new upload's correlation id, for
    genaiops.follow to follow too."""

    def __init__(self, storage: BlobServiceClient, flows: Path, first_runs: Collection[str],
                 served: Collection[str]) -> None:
        self.storage, self.flows, self.first_runs, self.served = storage, flows, set(first_runs), set(served)
        self.serving_variant: dict[str, str] | None = None
        self.correlation_id: str | None = None

    def on_event(self, event: Event) -> str | None:
        if event.correlation_id not in self.first_runs or getattr(event.payload, "use_case", None) != USE_CASE:
            return None
        if isinstance(event, FlowRegistered):
            self.serving_variant = dict(event.payload.variant)
        if event.type not in self.served or self.correlation_id is not None or self.serving_variant is None:
            return None
        print(f"A/B round: edited {edit_prompt(self.flows)} in {self.flows}; re-testing only "
              f"{self.serving_variant}")
        retest_only(self.flows, self.serving_variant)
        _, self.correlation_id = upload_dataset(self.storage, self.flows / USE_CASE / QUESTIONS, use_case=USE_CASE)
        return self.correlation_id


@dataclass(frozen=True)
class Answer:
    request_id: str
    deployment: str
    right: bool
    feedback_status: int


@dataclass(frozen=True)
class Endpoint:
    name: str
    router: str
    traffic: dict[str, int]
    configured: tuple[int, int]  # deployment.traffic: (new, current)


def endpoint_of(storage: BlobServiceClient, flows: Path) -> Endpoint | None:
    """The use case's local endpoint as the deployer left it, with the split its configuration asks for."""
    config = deployment_config(load_experiment(flows / USE_CASE, "local"), "local", {})  # local: no app settings
    blob = storage.get_blob_client(DEPLOYMENTS, f"{USE_CASE}/{config.endpoint_name}.json")
    if not blob.exists():
        return None
    state = json.loads(blob.download_blob().readall())
    return Endpoint(config.endpoint_name, f"http://127.0.0.1:{state['router_port']}/score", dict(state["traffic"]),
                    (config.traffic.new, config.traffic.current))


FEEDBACK_PATIENCE_SECONDS = 120.0


def _post_feedback(url: str, key: str, body: dict[str, str | int]) -> int:
    """Post one rating; a 429 (the per-caller rate limit) is waited out as its Retry-After says, for up to
    FEEDBACK_PATIENCE_SECONDS: the senders share one caller's budget (30 a minute after a burst of 10), so a sender
    can lose the race for the next token several times in a row — a count of attempts gave up on a loaded machine."""
    deadline = time.monotonic() + FEEDBACK_PATIENCE_SECONDS
    while True:
        response = requests.post(url, json=body, headers={"x-functions-key": key}, timeout=30)
        wait = float(response.headers.get("Retry-After", "2"))
        if response.status_code != 429 or time.monotonic() + wait > deadline:
            return response.status_code
        time.sleep(wait)


def ask_and_rate(endpoint: Endpoint, base_url: str, key: str, questions: list[dict[str, str]]) -> list[Answer]:
    """Each question through the router as a user would send it; the user rates the answer by whether it is the
    expected number, as feedback naming the request id the router gave it."""
    feedback = f"{base_url}/api/feedback/{USE_CASE}/{endpoint.name}"

    def one(row: dict[str, str]) -> Answer:
        response = requests.post(endpoint.router, json={"question": row["question"]}, timeout=120)
        response.raise_for_status()
        served_by, request_id = response.headers["x-served-by"], response.headers["x-request-id"]
        right = str(response.json().get("answer", "")).strip() == row["answer"]
        status = _post_feedback(feedback, key, {"request_id": request_id, "deployment": served_by,
                                                "rating": RIGHT if right else WRONG})
        return Answer(request_id, served_by, right, status)

    with ThreadPoolExecutor(SENDERS) as senders:
        return list(senders.map(one, questions))


def questions(flows: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (flows / USE_CASE / QUESTIONS).read_text().splitlines() if line.strip()]


def ab_report(base_url: str, key: str, endpoint: str) -> ABReport:
    """The A/B report as the app writes it (reports/<use case>/deployments/<endpoint>/ab_report.*)."""
    response = requests.get(f"{base_url}/api/ab-report/{USE_CASE}/{endpoint}", params={"format": "json"},
                            headers={"x-functions-key": key}, timeout=60)
    response.raise_for_status()
    return ABReport.model_validate(response.json())


def download_ab_report(storage: BlobServiceClient, endpoint: str, out: Path) -> Path:
    name = deployment_reports_prefix(USE_CASE, endpoint) + "ab_report.html"
    target = out / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(storage.get_blob_client(REPORTS, name).download_blob().readall())
    return target


def summary(answers: list[Answer]) -> str:
    by_deployment: dict[str, list[Answer]] = {}
    for answer in answers:
        by_deployment.setdefault(answer.deployment, []).append(answer)
    return ", ".join(f"{name} answered {len(served)} ({sum(a.right for a in served)} right)"
                     for name, served in sorted(by_deployment.items()))


def verdicts(report: ABReport) -> list[str]:
    return [verdict(comparison, report.alpha) for comparison in report.comparisons]


@dataclass(frozen=True)
class Outcome:
    endpoint: Endpoint
    answers: list[Answer]
    report: ABReport
    page: Path


def compare(stack: LocalStack, storage: BlobServiceClient, flows: Path, out: Path) -> Outcome | None:
    """Traffic and feedback through the router, then the A/B report — when two versions serve."""
    endpoint = endpoint_of(storage, flows)
    serving = {} if endpoint is None else {name: share for name, share in endpoint.traffic.items() if share}
    if endpoint is None or len(serving) < 2:
        print(f"A/B round: {serving or 'nothing'} serves {USE_CASE}; nothing to compare")
        return None
    new, current = endpoint.configured
    print(f"{USE_CASE} at {endpoint.router}: traffic {serving} (its deployment.traffic: new {new} %, current "
          f"{current} %)")
    key = read_host_keys(stack.storage_connection_string)["default"]
    answers = ask_and_rate(endpoint, stack.base_url, key, questions(flows))
    accepted = sum(a.feedback_status == 201 for a in answers)
    print(f"asked the {len(answers)} test questions through the router: {summary(answers)}; each answer rated "
          f"{RIGHT} when right, {WRONG} when wrong: {accepted} ratings accepted by POST /api/feedback/{USE_CASE}/"
          f"{endpoint.name}")
    report = ab_report(stack.base_url, key, endpoint.name)
    for line in verdicts(report) or ["only one deployment served: nothing to compare"]:
        print(f"A/B verdict: {line}")
    page = download_ab_report(storage, endpoint.name, out)
    print(f"A/B report: file://{page} (in Azurite: {REPORTS}/{deployment_reports_prefix(USE_CASE, endpoint.name)}"
          f"ab_report.html; fresh: {stack.base_url}/api/ab-report/{USE_CASE}/{endpoint.name})")
    return Outcome(endpoint, answers, report, page)
