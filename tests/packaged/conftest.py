"""The Function package as the pipeline builds it, loaded by the local host with the settings Terraform writes.

- `package`: .azure-pipelines/scripts/build_function_package.sh, run as azure-pipelines.yml runs it, then unzipped
  (the folder Azure mounts as wwwroot).
- `packaged_host`: the local host (a copy of localstack/host only) on an interpreter with nothing but the standard
  library and the package's own .python_packages — a dependency missing from requirements.txt is an ImportError
  here as in Azure. Its settings are dev's, from infra/ (tests/packaged/app_settings.py) with the fake Terraform
  outputs below; Azure itself is answered at the SDK boundary (tests/packaged/boundary/sitecustomize.py): Azurite,
  the local broker, an in-memory Azure ML workspace, Log Analytics over its traffic (and rows a test adds:
  `log_traffic`), the scripted LLM, and a sink for App Insights telemetry.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from localstack.llm.scripted import ScriptedLLM, scripted_llm
from localstack.stack import AZURITE_ACCOUNT, AZURITE_KEY, LocalStack, Ports, free_port
from tests.fakes.log_analytics import seed_rows
from tests.packaged.app_settings import app_settings, write_local_settings
from tests.packaged.dev_environment import AOAI_ENDPOINT, PIPELINE_INPUTS, terraform_outputs

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / ".azure-pipelines" / "scripts" / "build_function_package.sh"
BOUNDARY = Path(__file__).resolve().parent / "boundary"
FAKES = ROOT / "tests" / "fakes"
@pytest.fixture(scope="session")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built Function package, unzipped."""
    out = tmp_path_factory.mktemp("artifact") / "functionapp.zip"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # python 3.11
    built = subprocess.run(["bash", str(BUILD_SCRIPT), str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=900, check=False)
    if built.returncode != 0:
        pytest.fail(f"build_function_package.sh failed ({built.returncode}):\n{built.stderr[-4000:]}")
    wwwroot = tmp_path_factory.mktemp("wwwroot")
    with zipfile.ZipFile(out) as archive:
        archive.extractall(wwwroot)
    return wwwroot


class TelemetrySink:
    """Stands in for App Insights ingestion: accepts every track call, remembers how each was authenticated.
    Served over TLS with a throw-away certificate (`ca_bundle`): azure-core sends bearer tokens over https only."""

    def __init__(self, state: Path) -> None:
        self.authorizations: list[str] = []
        self.ca_bundle, key = state / "sink-cert.pem", state / "sink-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                        "-out", str(self.ca_bundle)], check=True, capture_output=True, timeout=60)
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                items = self.rfile.read(int(self.headers.get("Content-Length") or 0)).count(b'"iKey"')
                sink.authorizations.append(self.headers.get("Authorization") or "")
                body = json.dumps({"itemsReceived": items, "itemsAccepted": items, "errors": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.ca_bundle, key)
        self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@dataclass
class PackagedHost:
    stack: LocalStack  # Azurite and the broker (its host is not started: the packaged one runs instead)
    base_url: str
    settings: dict[str, str]
    llm: ScriptedLLM
    telemetry: TelemetrySink
    fake_azure_dir: Path
    log: Path

    def azure_ml_calls(self) -> list[dict]:
        journal = self.fake_azure_dir / "calls.jsonl"
        return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []

    def log_traffic(self, rows: list[dict[str, Any]]) -> None:
        """Rows of AmlOnlineEndpointTrafficLog that Log Analytics holds from now on, beside the fake endpoints' own."""
        seed_rows(self.fake_azure_dir, rows)


def _clean_interpreter(target: Path) -> Path:
    """A venv without pip or any package: the standard library only, like the Functions Python worker's view."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    return target / "bin" / "python"


def _host_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
            return response.status in (200, 503)
    except OSError:
        return False


@pytest.fixture(scope="session")
def packaged_host(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PackagedHost]:
    state = tmp_path_factory.mktemp("packaged")
    stack = LocalStack(state_dir=state / "stack", ports=Ports.free(), with_model=False)
    telemetry = TelemetrySink(state)
    host_code = state / "host-code" / "localstack"  # the host alone: nothing else of the local stack
    shutil.copytree(ROOT / "localstack" / "host", host_code / "host", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "localstack" / "__init__.py", host_code / "__init__.py")
    python = _clean_interpreter(state / "venv")
    port = free_port()
    with scripted_llm() as llm:
        try:
            stack.start_azurite()
            stack.start_broker()
            settings = app_settings("dev", PIPELINE_INPUTS, terraform_outputs(telemetry.url))
            settings_file = write_local_settings(state / "local.settings.json", settings)
            fake_azure = state / "fake-azure"
            config = state / "fake-azure.json"
            config.write_text(json.dumps({
                "azurite": {"blob_endpoint": f"http://127.0.0.1:{stack.ports.blob}/{AZURITE_ACCOUNT}",
                            "account": AZURITE_ACCOUNT, "key": AZURITE_KEY},
                "broker": f"127.0.0.1:{stack.ports.broker}",
                "openai": {"endpoint": AOAI_ENDPOINT, "target": llm.base_url.removesuffix("/v1")},
                "state_dir": str(fake_azure),
            }))
            (state / "tmp").mkdir()
            env = {
                "PATH": "/usr/bin:/bin", "HOME": str(state), "TMPDIR": str(state / "tmp"), "PYTHONUNBUFFERED": "1",
                # The worker's path: the package's dependencies; the host's code and the SDK boundary for the test.
                "PYTHONPATH": os.pathsep.join([str(BOUNDARY), str(FAKES), str(host_code.parent),
                                               str(package / ".python_packages" / "lib" / "site-packages")]),
                "GENAIOPS_FAKE_AZURE": str(config),
                "WEBSITE_HOSTNAME": "func-genaiops-dev-7q2.azurewebsites.net",  # set by the platform
                "REQUESTS_CA_BUNDLE": str(telemetry.ca_bundle),  # trust the telemetry sink (https is all it needs)
            }
            log = state / "host.log"
            with log.open("ab") as output:
                process = subprocess.Popen(
                    [str(python), "-m", "localstack.host", "--script", str(package / "function_app.py"),
                     "--settings", str(settings_file), "--host-json", str(package / "host.json"),
                     "--port", str(port)],
                    cwd=package, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while not _host_ready(base_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the packaged app did not start:\n{log.read_text(errors='replace')[-4000:]}")
                time.sleep(0.5)
            try:
                yield PackagedHost(stack, base_url, settings, llm, telemetry, fake_azure, log)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        finally:
            telemetry.server.shutdown()
            stack.down()
