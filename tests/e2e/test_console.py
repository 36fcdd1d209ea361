"""The `genaiops` console command against the local stack, as a person runs it: a separate process that finds the
stack through its local.settings.json, uploads, follows, approves over HTTP, lists, reports — and exit codes a
pipeline can act on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localstack.llm.scripted import ScriptedLLM
from localstack.stack import LocalStack
from tests.e2e.conftest import running_stack
from tests.e2e.experiments import journal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "flows" / "math_coding" / "data" / "math_test.jsonl"
FIXTURE_FLOWS = ROOT / "tests" / "fixtures" / "flows"
APPROVER = "alice@contoso.com"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("console"), llm, APPROVERS=APPROVER) as started:
        yield started


def genaiops(stack: LocalStack, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    """The console command in its own process, pointed at the stack's settings file as `--settings`; `env` is
    what a user would have exported (it wins over the file)."""
    return subprocess.run([sys.executable, "-m", "genaiops", "--settings", str(stack.state_dir / "local.settings.json"),
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **env})


def test_upload_follow_approve_and_report_from_the_console(stack: LocalStack, tmp_path: Path) -> None:
    uploaded = genaiops(stack, "upload", str(DATA), "--use-case", "math_coding", "--no-follow")
    assert uploaded.returncode == 0, uploaded.stderr
    correlation_id = re.search(r"correlation id: (\S+)", uploaded.stdout)[1]

    waited = genaiops(stack, "wait", "--correlation-id", correlation_id, "--until", "approval.requested",
                      "--poll", "0.5")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert re.search(r"experiment\.progressed\s+math_coding standard: \d+/\d+ lines", waited.stdout)
    assert "evaluation.completed" in waited.stdout
    [requested] = [e for e in journal(stack, correlation_id) if e.type == "approval.requested"]
    approval_id = requested.payload.approval_id

    listed = genaiops(stack, "approvals", "list")
    assert approval_id in listed.stdout
    assert approval_id in genaiops(stack, "approvals", "show", approval_id).stdout

    approved = genaiops(stack, "approvals", "approve", approval_id, "--as", APPROVER, "--comment", "looks right")
    assert approved.returncode == 0, approved.stderr
    assert f"granted by {APPROVER}" in approved.stdout
    again = genaiops(stack, "approvals", "reject", approval_id, "--as", APPROVER)
    assert again.returncode == 1
    assert "HTTP 409" in again.stderr  # a decision is final

    deployed = genaiops(stack, "wait", "--correlation-id", correlation_id, "--until", "deployment.verified",
                        "--poll", "0.5")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    assert correlation_id in genaiops(stack, "runs").stdout
    assert "dataset.uploaded" in genaiops(stack, "status", "--correlation-id", correlation_id).stdout
    opened = genaiops(stack, "report", "open", "math_coding", "--no-browser", "--out", str(tmp_path))
    assert opened.returncode == 0, opened.stderr
    page = Path(opened.stdout.strip().splitlines()[-1])
    assert page.name == "summary.html"
    assert "<html" in page.read_text()


def test_exit_codes_a_pipeline_can_act_on(stack: LocalStack) -> None:
    assert genaiops(stack, "wait", "--correlation-id", "no-such-run", "--until", "evaluation.completed",
                    "--timeout", "2", "--poll", "0.5").returncode == 4
    assert genaiops(stack, "publish", "no.such.event", "--payload", "{}").returncode == 2
    assert genaiops(stack, "approvals", "show", "ap-0000").returncode == 1
    assert genaiops(stack, "approvals", "approve", "ap-0000").returncode == 1  # nobody signed in


def test_a_failing_event_ends_wait_with_exit_3(stack: LocalStack) -> None:
    uploaded = genaiops(stack, "upload", str(DATA), "--use-case", "math_coding", "--name", "exit3.jsonl",
                        "--no-follow")
    correlation_id = re.search(r"correlation id: (\S+)", uploaded.stdout)[1]
    failed = genaiops(stack, "wait", "--correlation-id", correlation_id, "--until", "deployment.verified", "--fail-on",
                      "dataset.uploaded", "--poll", "0.5", "--timeout", "60")
    assert failed.returncode == 3
    assert '"blob_name": "math_coding/exit3.jsonl"' in failed.stderr


def test_run_does_an_experiment_here_without_the_bus(stack: LocalStack, llm: ScriptedLLM) -> None:
    calls = llm.calls
    # The reference-format use case's pr overlay (3 lines, no evaluators), its connection set from the environment.
    ran = genaiops(stack, "run", "reference_math", "--env", "pr", GENAIOPS_FLOWS_DIR=str(FIXTURE_FLOWS),
                   AOAI_API_BASE=llm.azure_endpoint)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "evaluation.completed" in ran.stdout
    assert llm.calls - calls == 3  # every line ran, in this process, once
    assert re.search(r"reports: reports/reference_math/\S+/", ran.stdout)
