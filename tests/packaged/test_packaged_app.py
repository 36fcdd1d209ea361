"""What ships works: the Function package the pipeline builds, with dev's Terraform settings, takes one dataset
upload through experiment, gate, registration, approval and an Azure ML deployment to deployment.verified — with
no ImportError, no missing setting and no local-only code path (Azure answered at the SDK boundary only)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from localstack.host.app_service_auth import local_session_token
from localstack.host.keys import read_host_keys
from shared.adapters.azure_blob import AzureBlobStore
from shared.services.intake import dataset_uploaded_event
from tests.e2e.conftest import wait_for
from tests.e2e.production import journaled
from tests.fakes.azure_sdk import FakeCredential
from tests.infra.test_settings_contract import LOCAL_ONLY
from tests.packaged.conftest import PackagedHost, _clean_interpreter
from tests.packaged.dev_environment import (
    APPROVER,
    ENDPOINT_IDENTITY,
    ENDPOINT_IDENTITY_CLIENT_ID,
    LOG_ANALYTICS,
    SUBSCRIPTION,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]
DATA = Path(__file__).resolve().parents[2] / "flows" / "math_coding" / "data" / "math_test.jsonl"


def test_the_package_holds_the_app_and_its_dependencies_only(package: Path) -> None:
    assert (package / "function_app.py").is_file()
    assert (package / "host.json").is_file()
    assert (package / "flows" / "math_coding" / "experiment.yaml").is_file()
    site_packages = package / ".python_packages" / "lib" / "site-packages"
    assert (site_packages / "azure" / "functions").is_dir()
    assert (site_packages / "promptflow").is_dir()
    shipped = {path.name for path in package.iterdir()}
    assert not shipped & {"localstack", "tests", "sitecustomize.py", "local.settings.json", ".venv"}, shipped


@dataclass
class Lifecycle:
    session: requests.Session  # carries the function key
    outcome: dict  # deployment.verified (or what came instead)
    types: list[str]  # every event type in the run's journal


@pytest.fixture(scope="module")
def lifecycle(packaged_host: PackagedHost) -> Lifecycle:
    """One upload of math_test.jsonl driven to the deployment's outcome; the approver approves over HTTP."""
    host, stack = packaged_host, packaged_host.stack
    session = requests.Session()
    session.headers["x-functions-key"] = read_host_keys(stack.storage_connection_string)["default"]

    def journal(correlation_id: str) -> list[dict]:
        answer = session.get(f"{host.base_url}/api/runs/{correlation_id}/events", timeout=10)
        return answer.json() if answer.status_code == 200 else []

    def first(correlation_id: str, *types: str) -> dict | None:
        return next((event for event in journal(correlation_id) if event["type"] in types), None)

    content = DATA.read_bytes()
    storage = BlobServiceClient.from_connection_string(stack.storage_connection_string)
    etag = storage.get_blob_client("datasets", "math_coding/math_test.jsonl").upload_blob(
        content, overwrite=True)["etag"]
    upload = dataset_uploaded_event("datasets", "math_coding/math_test.jsonl", len(content), etag)
    assert upload is not None
    cid = upload.correlation_id

    gate = wait_for(lambda: first(cid, "gate.passed", "gate.failed", "experiment.failed"), timeout=600, interval=2,
                    what="the experiment and the gate")
    assert gate["type"] == "gate.passed", gate
    requested = wait_for(lambda: first(cid, "approval.requested", "approval.rejected"), timeout=120,
                         what="approval.requested")
    assert requested["type"] == "approval.requested", requested  # App Service authentication is on in dev
    token = local_session_token(stack.storage_connection_string, APPROVER)
    answer = session.post(f"{host.base_url}/api/approvals/{requested['payload']['approval_id']}/approve",
                          json={"comment": "ship it"}, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    outcome = wait_for(lambda: first(cid, "deployment.verified", "deployment.rolled_back"), timeout=300, interval=2,
                       what="the deployment's outcome")
    return Lifecycle(session, outcome, [event["type"] for event in journal(cid)])


def test_an_upload_reaches_deployment_verified(packaged_host: PackagedHost, lifecycle: Lifecycle) -> None:
    assert not set(packaged_host.settings) & LOCAL_ONLY  # Terraform's settings: no connection string, no local target
    outcome = lifecycle.outcome
    assert outcome["type"] == "deployment.verified", outcome
    assert {"data.registered", "flow.registered", "deployment.completed", "smoke.passed"} <= set(lifecycle.types)
    assert outcome["payload"]["traffic"] == {outcome["payload"]["deployment"]: 100}
    log = packaged_host.log.read_text(errors="replace")
    assert "ModuleNotFoundError" not in log
    assert "ImportError" not in log


def test_azure_ml_was_asked_for_what_dev_needs_with_terraforms_identities(packaged_host: PackagedHost,
                                                                         lifecycle: Lifecycle) -> None:
    by_operation = {call["operation"]: call for call in packaged_host.azure_ml_calls()}
    data = by_operation["data.create_or_update"]
    assert data["path"].startswith("https://stgenaiopsdevdata7q2.blob.core.windows.net/datasets/math_coding/")
    assert by_operation["models.create_or_update"]["name"] == "math_coding"
    connection = by_operation["connections.create_or_update"]
    assert (connection["name"], connection["credentials"], connection["holds_key"]) == (
        "aoai", "AadCredentialConfiguration", False)
    assert connection["target"].rstrip("/") == "https://oai-genaiops-dev.openai.azure.com"
    endpoint = by_operation["online_endpoints.begin_create_or_update"]
    assert endpoint["name"] == lifecycle.outcome["payload"]["endpoint"]
    assert endpoint["identities"] == [ENDPOINT_IDENTITY]
    deployment = by_operation["online_deployments.begin_create_or_update"]
    assert deployment["environment_variables"]["AZURE_CLIENT_ID"] == ENDPOINT_IDENTITY_CLIENT_ID
    # The endpoint's traffic log goes to Terraform's Log Analytics workspace, where the A/B report reads it.
    setting = by_operation["arm.put"]
    assert setting["url"] == (f"https://management.azure.com/subscriptions/{SUBSCRIPTION}/resourceGroups/"
                              f"rg-genaiops-dev/providers/Microsoft.MachineLearningServices/workspaces/"
                              f"mlw-genaiops-dev-7q2/onlineEndpoints/{endpoint['name']}/providers/"
                              "Microsoft.Insights/diagnosticSettings/genaiops-endpoint-traffic")
    assert setting["body"]["properties"]["workspaceId"] == LOG_ANALYTICS
    assert setting["body"]["properties"]["logs"] == [{"category": "AmlOnlineEndpointTrafficLog", "enabled": True}]


def test_azure_openai_and_app_insights_got_the_identitys_token_never_a_key(packaged_host: PackagedHost,
                                                                           lifecycle: Lifecycle) -> None:
    assert packaged_host.llm.credentials == {f"bearer {FakeCredential.TOKEN}"}
    assert packaged_host.telemetry.authorizations
    assert set(packaged_host.telemetry.authorizations) == {f"Bearer {FakeCredential.TOKEN}"}


def test_the_ab_report_reads_the_endpoints_traffic_from_log_analytics(packaged_host: PackagedHost,
                                                                      lifecycle: Lifecycle) -> None:
    base, session = packaged_host.base_url, lifecycle.session
    name, served_by = lifecycle.outcome["payload"]["endpoint"], lifecycle.outcome["payload"]["deployment"]
    feedback = session.post(f"{base}/api/feedback/math_coding/{name}", timeout=10,
                            json={"request_id": "r-1", "deployment": served_by, "rating": 5})
    assert feedback.status_code == 201, feedback.text
    report = session.get(f"{base}/api/ab-report/math_coding/{name}", params={"format": "json"}, timeout=30)
    assert report.status_code == 200, report.text
    [stats] = report.json()["deployments"]
    assert stats["deployment"] == served_by
    assert stats["requests"] >= 6  # the smoke test's sample request and 5 dataset rows, at least


def traffic_row(endpoint: str, deployment: str, status: int, at: datetime, *, method: str = "POST",
                path: str = "/score") -> dict[str, Any]:
    """One request as Azure ML logs it to AmlOnlineEndpointTrafficLog."""
    return {"TimeGenerated": at.isoformat(), "EndpointName": endpoint, "DeploymentName": deployment,
            "Method": method, "Path": path, "ResponseCode": status, "ResponseCodeReason": "",
            "TotalDurationMs": 250 + status, "XRequestId": f"user-{at:%H%M%S%f}-{status}", "XMSClientRequestId": ""}


def test_the_monitor_reports_a_deployment_whose_traffic_log_breaks_the_error_rate(packaged_host: PackagedHost,
                                                                                  lifecycle: Lifecycle) -> None:
    """Terraform's MONITORING_SCHEDULE ticks the timer every minute, and math_coding's dev overlay has the monitor look
    at the endpoint's traffic log in Log Analytics at each tick. Users' requests that failed on the deployment break
    its error rate: deployment.degraded with the evidence, and a notification. Only that deployment serves after
    the lifecycle, so nothing can take its share: the rollback is impossible and no traffic moves."""
    host, stack = packaged_host, packaged_host.stack
    endpoint, deployment = lifecycle.outcome["payload"]["endpoint"], lifecycle.outcome["payload"]["deployment"]
    # One moment for all rows (a millisecond apart): a firing never splits them between two windows.
    moment = datetime.now(UTC) - timedelta(seconds=1)
    statuses = [200] * 18 + [500, 502, 503, 424, 429, 408] + [404, 401]  # 6 errors; 404/401 are the callers'
    users = [traffic_row(endpoint, deployment, status, moment + timedelta(milliseconds=i))
             for i, status in enumerate(statuses)]
    elsewhere = [traffic_row("other-endpoint", deployment, 500, moment), traffic_row("", deployment, 500, moment),
                 traffic_row(endpoint, deployment, 500, moment, method="GET", path="/health"),
                 traffic_row(endpoint, "", 429, moment)]  # refused by the endpoint before any deployment
    puts = [call for call in host.azure_ml_calls() if call["operation"] == "online_endpoints.begin_create_or_update"]
    host.log_traffic(users + elsewhere)

    blobs = AzureBlobStore(BlobServiceClient.from_connection_string(stack.storage_connection_string))
    [degraded] = wait_for(lambda: journaled(blobs, "monitor-math_coding-", "deployment.degraded"), timeout=180,
                          interval=2, what="deployment.degraded (the monitor looks every minute)")
    payload = degraded.payload
    assert (payload.endpoint, payload.deployment, payload.environment) == (endpoint, deployment, "dev")
    [breach] = payload.breaches
    assert breach.startswith("error rate ")
    window = payload.window
    assert window.errors == 6  # only the 5xx, 424, 429 and 408 of this endpoint's deployment
    assert window.requests >= len(users)  # and the smoke test's requests, all answered
    assert window.error_rate == window.errors / window.requests > 0.05
    assert window.end - window.start == timedelta(minutes=15)
    assert payload.thresholds.model_dump() == {"min_requests": 20, "max_error_rate": 0.05, "latency_p95_ms": 10000}
    assert (payload.traffic, payload.rollback) == ({deployment: 100}, "impossible")

    journal = lifecycle.session.get(f"{host.base_url}/api/runs/{degraded.correlation_id}/events", timeout=10).json()
    assert [event["type"] for event in journal] == ["deployment.degraded"]  # no retire was requested
    # Without APPROVAL_WEBHOOK_URL (Terraform sets none) people are told on the log: one JSON line, its facts inside.
    title = f"Degraded: math_coding {deployment} on {endpoint} (dev)"
    line = wait_for(lambda: next((line for line in host.log.read_text(errors="replace").splitlines()
                                  if title in line), None), timeout=60, what="the notification's log line")
    kind, facts = json.loads(line)["msg"].split(" ", 1)
    assert (kind, json.loads(facts)["event_id"], json.loads(facts)["rollback"]) == (
        "deployment.degraded", degraded.id, "impossible")
    assert [call for call in host.azure_ml_calls()
            if call["operation"] == "online_endpoints.begin_create_or_update"] == puts  # the split stays


def test_the_package_builds_a_flows_image_context_on_the_workers_path(package: Path, tmp_path: Path) -> None:
    """Target container runs `pf flow build` in a child of the worker: on the packaged layout, with only the
    package's dependencies, it writes the context Azure ML builds the image from."""
    python = _clean_interpreter(tmp_path / "venv")
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from shared.deployment.container_build import build_container_context\n"
        "from shared.experiments.config import load_experiment\n"
        "from shared.experiments.variants import discover_variants, expand, materialize\n"
        "from shared.services.deployment_settings import workspace_connections\n"
        "config = load_experiment(Path('flows/math_coding'), environment='dev', local=False)\n"
        "standard = Path('flows/math_coding/flows/standard')\n"
        "flow = materialize(standard, expand(discover_variants(standard))[0], Path(sys.argv[1]) / 'flow')\n"
        "context = build_container_context(flow, flow_name='math_coding', version='1',\n"
        "    output_dir=Path(sys.argv[1]) / 'context',\n"
        "    connections=workspace_connections(config, {'AOAI_API_BASE': 'https://oai.example'}))\n"
        "print(json.dumps(context.required_settings))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(package), str(package / ".python_packages" / "lib" / "site-packages")])}
    built = subprocess.run([str(python), "-c", script, str(tmp_path / "work")], cwd=package, env=env,
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    assert json.loads(built.stdout.strip().splitlines()[-1]) == ["AOAI_API_BASE"]  # Entra ID: no key setting
    assert (tmp_path / "work" / "context" / "Dockerfile").is_file()
    assert (tmp_path / "work" / "context" / "flow" / "flow.dag.yaml").is_file()
