"""Start and stop the local stack: Azurite (storage), the Service Bus-compatible broker, and the local host.

Used by `make demo` / `make up` (python -m localstack up) and by the end-to-end tests (with their own ports
and state folder), so the tests exercise exactly what a newcomer runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localstack.deployment import FACTORY as LOCAL_FACTORY

ROOT = Path(__file__).resolve().parent.parent
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (documented by Microsoft; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class StackError(RuntimeError):
    pass


@dataclass(frozen=True)
class Ports:
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    broker: int = 5672
    host: int = 7071
    llm: int = 8089

    @classmethod
    def from_env(cls) -> Ports:
        defaults = cls()
        return cls(**{name: int(os.environ.get(f"LOCALSTACK_{name.upper()}_PORT") or getattr(defaults, name))
                      for name in ("blob", "queue", "table", "broker", "host", "llm")})

    @classmethod
    def free(cls) -> Ports:
        # Six probes held open together: one closed before the next is bound may be handed out again (seen: Azurite's
        # blob and queue services given the same port).
        with contextlib.ExitStack() as held:
            probes = [held.enter_context(socket.socket()) for _ in range(6)]
            for probe in probes:
                probe.bind(("127.0.0.1", 0))
            return cls(*(int(probe.getsockname()[1]) for probe in probes))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.3)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class LocalStack:
    state_dir: Path = ROOT / ".localstack"
    ports: Ports = field(default_factory=Ports.from_env)
    max_delivery_count: int = 10
    lock_duration_seconds: int = 30
    extra_settings: dict[str, str] = field(default_factory=dict)
    with_model: bool = True  # serve the real local model; tests pass False and bring a scripted LLM
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # --- connection settings ---------------------------------------------------------------------

    @property
    def storage_connection_string(self) -> str:
        base = f"http://127.0.0.1:{self.ports.blob}/{AZURITE_ACCOUNT}"
        queue = f"http://127.0.0.1:{self.ports.queue}/{AZURITE_ACCOUNT}"
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={base};QueueEndpoint={queue};")

    @property
    def servicebus_connection_string(self) -> str:
        return (f"Endpoint=sb://127.0.0.1:{self.ports.broker};SharedAccessKeyName=RootManageSharedAccessKey;"
                "SharedAccessKey=local-dev-key;UseDevelopmentEmulator=true")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.host}"

    def settings(self) -> dict[str, str]:
        """The app settings the host gets; the same names Azure uses (see infra/)."""
        template = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
        template.update({
            "AzureWebJobsStorage": self.storage_connection_string,
            "GenAIOpsStorage": self.storage_connection_string,
            "ServiceBusConnection": self.servicebus_connection_string,
            "GENAIOPS_PUBLIC_BASE_URL": self.base_url,
            "GENAIOPS_WORK_DIR": str(self.state_dir / "work"),
            # The local target lives here, not in shared/: the app loads it by this name.
            "LOCAL_DEPLOYER_FACTORY": LOCAL_FACTORY,
        })
        if self.with_model:
            # The flows' `aoai` connection: as experiment.local.yaml declares it (an OpenAI-type connection), and as
            # a reference-template use case does (AzureOpenAIConnection: api_base overridden, the Azure route).
            template.update({"AOAI_BASE_URL": f"http://127.0.0.1:{self.ports.llm}/v1", "AOAI_API_KEY": "local-model",
                             "AOAI_API_BASE": f"http://127.0.0.1:{self.ports.llm}"})
        template.update(self.extra_settings)
        return template

    # --- processes -------------------------------------------------------------------------------

    def up(self) -> None:
        self.start_azurite()
        self.start_broker()
        if self.with_model:
            self.start_llm()
        self.start_host()

    def start_llm(self) -> None:
        from localstack.llm import local_model

        if not local_model.is_installed():
            raise StackError(f"the local model is not installed: {local_model.INSTALL_HINT}")
        url = local_model.base_url(self.ports.llm)
        self._start("llm", local_model.server_command(self.ports.llm), ports=[self.ports.llm],
                    ready=lambda: local_model.is_ready(url))

    def start_azurite(self) -> None:
        azurite = ROOT / "node_modules" / ".bin" / "azurite"
        if not azurite.exists():
            raise StackError("Azurite is not installed: run `npm ci` (or `make install`) first")
        data = self.state_dir / "azurite"
        data.mkdir(parents=True, exist_ok=True)
        self._start("azurite", [
            str(azurite), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--location", str(data),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.ports.blob),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.ports.queue),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.ports.table),
        ], ports=[self.ports.blob, self.ports.queue, self.ports.table])
        self.provision_storage()

    def provision_storage(self) -> None:
        """Create the app's containers, as infra/storage.tf does in Azure."""
        from azure.core.exceptions import ResourceExistsError
        from azure.storage.blob import BlobServiceClient

        from shared.blob_layout import ALL_CONTAINERS

        service = BlobServiceClient.from_connection_string(self.storage_connection_string)
        for container in ALL_CONTAINERS:
            with contextlib.suppress(ResourceExistsError):
                service.create_container(container)

    def start_broker(self) -> None:
        self._start("broker", [
            sys.executable, "-m", "localstack.servicebus_broker", "--host", "127.0.0.1",
            "--port", str(self.ports.broker), "--queues", self.settings()["EVENTS_QUEUE"],
            "--max-delivery-count", str(self.max_delivery_count),
            "--lock-duration", str(self.lock_duration_seconds),
            "--data-dir", str(self.state_dir / "broker"),
        ], ports=[self.ports.broker])

    def start_host(self, name: str = "host", port: int | None = None) -> None:
        """One Functions host process; more (another `name` and `port`) share the bus and storage, as Function
        instances do when the platform scales out."""
        port = port or self.ports.host
        settings_file = self.state_dir / "local.settings.json"
        settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": self.settings()}, indent=2))
        self._start(name, [
            sys.executable, "-m", "localstack.host", "--script", str(ROOT / "function_app.py"),
            "--settings", str(settings_file), "--host-json", str(ROOT / "host.json"),
            "--port", str(port),
        ], ports=[port], ready=lambda: self._host_ready(port))

    def kill(self, name: str) -> None:
        """SIGKILL a service, as a crashed instance dies: no clean-up, no settlement of its messages."""
        pid = self._running_pid(name)
        if pid is None:
            raise StackError(f"{name} is not running")
        os.killpg(pid, signal.SIGKILL)
        child = self._children.pop(name, None)
        if child is not None:
            child.wait()
        self._pid_file(name).unlink(missing_ok=True)

    def down(self) -> list[str]:
        hosts = sorted({"host", *(path.stem for path in self.state_dir.glob("host*.pid"))})  # scaled-out ones too
        stopped = [name for name in (*hosts, "llm", "broker") if self.stop(name)]
        stopped += self.stop_endpoints()
        return stopped + (["azurite"] if self.stop("azurite") else [])

    def stop_endpoints(self) -> list[str]:
        """Local endpoints (A/B routers and flow servers) outlive the host, like real endpoints; their state is in
        Azurite, so they are stopped from there while it still runs."""
        if self._running_pid("azurite") is None:
            return []
        from azure.storage.blob import BlobServiceClient

        from localstack.deployment.local_deployer import LocalDeployer
        from shared.adapters.azure_blob import AzureBlobStore
        from shared.adapters.clock import SystemClock

        blobs = AzureBlobStore(BlobServiceClient.from_connection_string(self.storage_connection_string))
        deployer = LocalDeployer(blobs, SystemClock(), work_dir=self.state_dir / "deployments",
                                 connections_for=lambda use_case: [])
        return [f"endpoint {endpoint}" for endpoint in deployer.stop_all()]

    def stop(self, name: str) -> bool:
        """Stop one service; True when it was running."""
        pid = self._running_pid(name)
        if pid is not None:
            self._terminate(name, pid)
        self._pid_file(name).unlink(missing_ok=True)
        return pid is not None

    def status(self) -> dict[str, int | None]:
        return {name: self._running_pid(name) for name in ("azurite", "broker", "llm", "host")
                if name != "llm" or self.with_model}

    def log_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def _start(self, name: str, command: list[str], ports: list[int], ready: Callable[[], bool] | None = None,
               env: dict[str, str] | None = None) -> None:
        pid = self._running_pid(name)
        if pid is not None:
            raise StackError(f"{name} is already running (pid {pid}); `make down` stops the local stack")
        busy = [port for port in ports if port_is_open(port)]
        if busy:
            raise StackError(f"cannot start {name}: port(s) {busy} already in use by another program "
                             f"(set LOCALSTACK_*_PORT to use others, or stop it)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        with self.log_file(name).open("ab") as log:
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._pid_file(name).write_text(str(process.pid))
        self._children[name] = process
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._pid_file(name).unlink(missing_ok=True)
                raise StackError(f"{name} exited with code {process.returncode}:\n{self._tail(name)}")
            if all(port_is_open(port) for port in ports) and (ready is None or ready()):
                return
            time.sleep(0.2)
        self.down()
        raise StackError(f"{name} did not become ready within 60 s:\n{self._tail(name)}")

    def _host_ready(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                return response.status in (200, 503)
        except OSError:
            return False

    def _pid_file(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    def _running_pid(self, name: str) -> int | None:
        try:
            pid = int(self._pid_file(name).read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def _terminate(self, name: str, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        child = self._children.pop(name, None)
        if child is not None:  # started by this process: reap it, or it lingers as a zombie
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
                child.wait()
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def _tail(self, name: str, lines: int = 30) -> str:
        path = self.log_file(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
