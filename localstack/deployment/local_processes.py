"""The processes behind the local target (localstack/serving): a flow server per deployment and an A/B router per
endpoint — started, adopted after an app restart, revived when they no longer answer, and stopped.

The deployer (local_deployer.py) decides what should run and keeps the records; this module keeps it running.
Nothing here reads or writes storage: callers pass an endpoint's state in and save it when `revive` changed it.
localstack is imported only when a process is touched, so loading this module stays cheap.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localstack.deployment.local_state import (
    ConnectionsFor,
    LocalDeploymentState,
    LocalEndpointState,
    MaskFieldsFor,
)
from shared.blob_layout import safe_segment
from shared.deployment.port import DeploymentFailed, DeploymentRequest
from shared.redaction import redact_text

_COPY_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".promptflow", ".runs")
ROUTER = ""  # the router's key among an endpoint's processes (deployments use their names)


def endpoint_dir(work_dir: Path, use_case: str, endpoint: str) -> Path:
    """The endpoint's files: telemetry, router log, and each deployment's copy of its flow."""
    return work_dir / "endpoints" / safe_segment(use_case) / safe_segment(endpoint)


def router_url(state: LocalEndpointState) -> str:
    return f"http://127.0.0.1:{state.router_port}"


def router_client(state: LocalEndpointState) -> Any:
    from localstack.serving.router_admin import RouterClient

    return RouterClient(router_url(state))


class LocalProcesses:
    """The processes this app instance started or adopted, per (endpoint, deployment name or ROUTER)."""

    def __init__(self, *, work_dir: Path, connections_for: ConnectionsFor, secrets_env: Mapping[str, str] | None,
                 start_timeout_seconds: float, production_log_connection: str | None = None,
                 mask_fields_for: MaskFieldsFor | None = None) -> None:
        self.work_dir = work_dir
        self.production_log_connection = production_log_connection
        self.mask_fields_for = mask_fields_for
        self.connections_for = connections_for
        self.secrets_env = secrets_env
        self.start_timeout_seconds = start_timeout_seconds
        self._processes: dict[tuple[str, str], Any] = {}  # -> ServerProcess (or a FlowServer / RouterProcess)

    def keep(self, endpoint: str, name: str, process: Any) -> Any:
        """Track `process` for the deployment; returns the process it replaces (None when there was none)."""
        old = self._processes.pop((endpoint, name), None)
        self._processes[(endpoint, name)] = process
        return old

    def start_router(self, state: LocalEndpointState) -> None:
        from localstack.serving.flow_server import port_free
        from localstack.serving.router_admin import RouterProcess

        folder = endpoint_dir(self.work_dir, state.use_case, state.endpoint)
        # The same port again when it is free, so callers holding the scoring URI keep working.
        port = state.router_port if state.router_port and port_free(state.router_port) else None
        router = RouterProcess(state.endpoint, Path(state.telemetry_file), port=port,
                               seed=state.seed, log_file=folder / "router.log",
                               upstream_timeout_seconds=state.request_timeout_ms / 1000, use_case=state.use_case,
                               production_log_connection=self.production_log_connection,
                               mask_fields=self.mask_fields_for(state.use_case) if self.mask_fields_for else ())
        router.start().wait_ready(30)
        self._processes[(state.endpoint, ROUTER)] = router
        state.router_port, state.router_pid = router.port, router.pid

    def start_server(self, request: DeploymentRequest) -> tuple[Any, Path]:
        """A new flow server for the request, serving its own copy of the flow (Azure ML copies the model too: a
        restart needs the files). The caller tracks it with `keep` once the state records it."""
        from localstack.serving.flow_server import ServingError

        endpoint = request.config.endpoint_name
        folder = (endpoint_dir(self.work_dir, request.use_case, endpoint) / safe_segment(request.deployment_name)
                  / safe_segment(request.flow_version))
        flow_copy = folder / "flow"
        if flow_copy.exists():
            shutil.rmtree(flow_copy)
        shutil.copytree(request.flow_dir, flow_copy, ignore=_COPY_IGNORED)
        try:
            server = self._server(request.use_case, endpoint, request.deployment_name, flow_copy,
                                  request.config.environment_variables)
            server.start().wait_ready(self.start_timeout_seconds)
        except ServingError as failure:
            raise DeploymentFailed(f"deployment {request.deployment_name} of {request.flow_name} "
                                   f"v{request.flow_version} did not start", logs=redact_text(str(failure))) from None
        return server, flow_copy

    def serving(self, state: LocalEndpointState, name: str) -> bool:
        """Whether the deployment answers and the router sends its share to it."""
        deployment = state.deployments[name]
        if not self._alive(state.endpoint, name, deployment.pid, deployment.port):
            return False
        from localstack.serving.flow_server import ServingError

        try:
            return router_client(state).deployments().get(name) == f"http://127.0.0.1:{deployment.port}"
        except ServingError:
            return False

    def revive(self, state: LocalEndpointState) -> bool:
        """Restart whatever of the endpoint no longer answers (after a reboot, a crash, `stop_all`); True when
        something was restarted and the state changed."""
        changed = False
        if not self._alive(state.endpoint, ROUTER, state.router_pid, state.router_port):
            self.start_router(state)
            changed = True
        router = router_client(state)
        routed = router.deployments()
        dead = [d for d in state.deployments.values() if not self._alive(state.endpoint, d.name, d.pid, d.port)]
        servers = [self._server(state.use_case, state.endpoint, d.name, Path(d.flow_dir), d.environment_variables)
                   for d in dead]
        if servers:
            from localstack.serving.flow_server import ServingError, start_all

            try:
                start_all(servers, self.start_timeout_seconds)
            except ServingError as failure:
                raise DeploymentFailed(f"endpoint {state.endpoint}: could not restart its deployments",
                                       logs=redact_text(str(failure))) from None
        for deployment, server in zip(dead, servers, strict=True):
            self._processes[(state.endpoint, deployment.name)] = server
            deployment.port, deployment.pid, changed = server.port, server.pid, True
        for deployment in state.deployments.values():
            url = f"http://127.0.0.1:{deployment.port}"
            if routed.get(deployment.name) != url:
                router.register(deployment.name, url)
                changed = True
        if router.traffic() != {name: state.traffic.get(name, 0) for name in state.deployments}:
            router.set_traffic({name: state.traffic.get(name, 0) for name in state.deployments})
        return changed

    def forget(self, endpoint: str, name: str) -> Any:
        """Stop tracking the deployment's process; returns it (None when this instance never had it)."""
        return self._processes.pop((endpoint, name), None)

    @staticmethod
    def stop(process: Any, deployment: LocalDeploymentState | None) -> None:
        """Stop `process`, or when this instance does not hold it, the one the record names (adopted by its pid)."""
        if process is None and deployment is not None and deployment.pid is not None:
            from localstack.serving.flow_server import ServerProcess

            process = ServerProcess.adopt(deployment.name, deployment.pid, deployment.port)
        if process is not None:
            process.stop()

    def stop_endpoint(self, state: LocalEndpointState) -> None:
        for name, deployment in state.deployments.items():
            self.stop(self.forget(state.endpoint, name), deployment)
        router = self.forget(state.endpoint, ROUTER)
        if router is None and state.router_pid is not None:
            from localstack.serving.flow_server import ServerProcess

            router = ServerProcess.adopt(state.endpoint, state.router_pid, state.router_port)
        if router is not None:
            router.stop()

    # --- internals -----------------------------------------------------------------------------------------------

    def _alive(self, endpoint: str, key: str, pid: int | None, port: int) -> bool:
        """Whether the process answers, adopting one an earlier app instance started."""
        from localstack.serving.flow_server import ServerProcess

        process = self._processes.get((endpoint, key))
        if process is not None and process.pid == pid and process.ready():
            return True
        if pid is None:
            return False
        adopted = ServerProcess.adopt(f"{endpoint}/{key or 'router'}", pid, port)
        if adopted is None:
            return False
        self._processes[(endpoint, key)] = adopted
        return True

    def _server(self, use_case: str, endpoint: str, name: str, flow_copy: Path,
                environment: Mapping[str, str] | None = None) -> Any:
        from localstack.serving.flow_server import FlowServer

        env = {**os.environ, **(self.secrets_env or {}), **(environment or {})}
        return FlowServer(flow_copy, name=f"{endpoint}/{name}", connections=self.connections_for(use_case),
                          environment=env, log_file=flow_copy.parent / "server.log")
