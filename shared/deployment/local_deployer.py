"""The Deployer for target `local`: each deployment is a flow server on a 127.0.0.1 port, each endpoint an A/B
router in front of its deployments (localstack/serving), both processes of their own.

State lives in blob storage, `deployments/{use_case}/{endpoint}.json`: the router's and every deployment's port
and pid, flow version, and the traffic. Processes outlive the app that started them, as real endpoints outlive the
Function App; a restarted app reads the state, adopts what still answers and restarts what does not (from its own
copy of the flow, taken at deploy time). Connections are built from the use case's experiment.yaml, their secrets
read from this app's environment (app settings) and handed to the flow server's environment only.

`stop_all()` stops the processes of every local endpoint recorded in storage (`make down`); the state stays, so the
next call on an endpoint starts it again. `delete_endpoint` stops one endpoint and forgets it.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.blob_layout import DEPLOYMENTS, deployed_state_name, safe_segment
from shared.deployment.local_state import (
    ConnectionsFor,
    LocalDeploymentState,
    LocalEndpointState,
    endpoint_state_name,
    experiment_connections,
)
from shared.deployment.port import (
    DEPLOYMENT_HEADER,
    Deployed,
    DeploymentConfig,
    DeploymentError,
    DeploymentFailed,
    DeploymentRequest,
    DeploymentTarget,
    EndpointNotFound,
    InvalidTraffic,
    OperationKind,
    OperationState,
    OperationStatus,
    ScoringTarget,
    check_traffic,
)
from shared.ports import BlobNotFound, BlobStore, Clock, PreconditionFailed
from shared.redaction import redact_text

__all__ = ["LocalDeployer", "endpoint_state_name", "experiment_connections"]

_COPY_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".promptflow", ".runs")


class LocalDeployer:
    def __init__(self, blobs: BlobStore, clock: Clock, *, work_dir: Path, connections_for: ConnectionsFor,
                 secrets_env: Mapping[str, str] | None = None, router_seed: int | None = None,
                 start_timeout_seconds: float = 120.0) -> None:
        """`secrets_env`: settings layered over os.environ for the flow servers (tests; in the app, connection
        secrets are app settings, so os.environ already has them). `router_seed`: seeds every new router's
        traffic draw (tests; None = unpredictable)."""
        self.blobs = blobs
        self.clock = clock
        self.work_dir = Path(work_dir)
        self.connections_for = connections_for
        self.secrets_env = secrets_env
        self.router_seed = router_seed
        self.start_timeout_seconds = start_timeout_seconds
        self._use_cases: dict[str, str] = {}  # endpoint -> use case
        self._processes: dict[tuple[str, str], Any] = {}  # (endpoint, deployment or "") -> ServerProcess
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # --- the Deployer port -------------------------------------------------------------------------------------
    # Starting a local flow server takes seconds, so every operation completes before begin_* returns; the
    # deployment service still drives them through the same state machine as Azure ML's.

    def begin_endpoint(self, config: DeploymentConfig) -> OperationState:
        # The router starts with the endpoint's first deployment (it needs the use case's folder).
        return OperationState(kind=OperationKind.ENDPOINT, endpoint=config.endpoint_name,
                              status=OperationStatus.SUCCEEDED)

    def begin_deploy(self, request: DeploymentRequest) -> OperationState:
        state = OperationState(kind=OperationKind.DEPLOYMENT, endpoint=request.config.endpoint_name,
                               deployment=request.deployment_name)
        try:
            deployed = self.deploy(request)
        except DeploymentFailed as failure:
            return state.finished(OperationStatus.FAILED, str(failure), failure.logs)
        return state.model_copy(update={"status": OperationStatus.SUCCEEDED, "details": deployed.details})

    def begin_set_traffic(self, endpoint: str, traffic: dict[str, int]) -> OperationState:
        applied = self.set_traffic(endpoint, traffic)
        return OperationState(kind=OperationKind.TRAFFIC, endpoint=endpoint, traffic=applied,
                              status=OperationStatus.SUCCEEDED)

    def poll(self, state: OperationState) -> OperationState:
        return state  # never pending

    def deploy(self, request: DeploymentRequest) -> Deployed:
        if request.config.target is not DeploymentTarget.LOCAL:
            raise DeploymentError(f"LocalDeployer serves target local, not {request.config.target.value}")
        endpoint, name = request.config.endpoint_name, request.deployment_name
        with self._lock(endpoint):
            state, _ = self._ensure_endpoint(request)
            current = state.deployments.get(name)
            if current is not None and current.flow_version == request.flow_version and self._serving(state, name):
                return self._deployed(state, name)  # a redelivered request: it already runs
        # Start outside the endpoint lock: several versions of one endpoint start in parallel.
        server, flow_copy = self._start_server(request)
        with self._lock(endpoint):
            try:
                state, etag = self._load(endpoint)
                replaced = state.deployments.get(name)
                self._router(state).register(name, server.url)
                state.deployments[name] = LocalDeploymentState(
                    name=name, flow_name=request.flow_name, flow_version=request.flow_version,
                    flow_dir=str(flow_copy), environment_variables=dict(request.config.environment_variables),
                    port=server.port, pid=server.pid, log_file=str(server.log_file), started_at=self.clock.now(),
                )
                state.traffic = self._router(state).traffic()
                self._save(state, etag)
            except Exception:
                # Nothing half-deployed: the state still names what ran before, and the next call's revive
                # points the router back at it.
                server.stop()
                raise
            old = self._processes.pop((endpoint, name), None)
            self._processes[(endpoint, name)] = server
            if replaced is not None and replaced.pid != server.pid:  # an update in place: the old one goes
                self._stop(old, replaced)
            return self._deployed(state, name)

    def set_traffic(self, endpoint: str, traffic: dict[str, int]) -> dict[str, int]:
        with self._lock(endpoint):
            state, etag = self._load(endpoint)
            unknown = sorted(set(traffic) - set(state.deployments))
            if unknown:
                raise InvalidTraffic(f"endpoint {endpoint}: no deployment(s) {', '.join(unknown)}")
            split = check_traffic({name: traffic.get(name, 0) for name in state.deployments})
            from localstack.serving.ab_router import RoutingError

            self._revive(state)
            try:
                state.traffic = self._router(state).set_traffic(split)
            except RoutingError as refusal:  # e.g. a share that is not a whole percentage
                raise InvalidTraffic(str(refusal)) from None
            self._save(state, etag)
            return dict(state.traffic)

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        try:
            state, _ = self._load(endpoint)
        except EndpointNotFound:
            return {}
        from localstack.serving.flow_server import ServingError

        try:
            return self._router(state).traffic()
        except ServingError:  # the router is down: what was last applied
            return {name: state.traffic.get(name, 0) for name in state.deployments}

    def scoring_request(self, endpoint: str, deployment: str | None = None) -> ScoringTarget:
        with self._lock(endpoint):
            state, etag = self._load(endpoint)
            if deployment is not None and deployment not in state.deployments:
                raise DeploymentError(f"endpoint {endpoint} has no deployment {deployment!r}")
            if self._revive(state):
                self._save(state, etag)
        headers = {DEPLOYMENT_HEADER: deployment} if deployment else {}
        return ScoringTarget.model_validate({"url": self._router_url(state) + "/score", "headers": headers})

    def remove(self, endpoint: str, deployment: str) -> None:
        with self._lock(endpoint):
            try:
                state, etag = self._load(endpoint)
            except EndpointNotFound:
                return
            gone = state.deployments.get(deployment)
            if gone is None:
                return
            if state.traffic.get(deployment, 0) > 0:
                raise DeploymentError(f"deployment {deployment} still has {state.traffic[deployment]}% of "
                                      f"{endpoint}'s traffic; move it first")
            from localstack.serving.flow_server import ServingError

            with contextlib.suppress(ServingError):  # the router is down: nothing routes to it anyway
                self._router(state).unregister(deployment)
            self._stop(self._processes.pop((endpoint, deployment), None), gone)
            shutil.rmtree(gone.flow_dir, ignore_errors=True)  # the log stays beside it, for the post-mortem
            del state.deployments[deployment]
            state.traffic.pop(deployment, None)
            self._save(state, etag)

    # --- local extras --------------------------------------------------------------------------------------------

    def telemetry_file(self, endpoint: str) -> Path:
        """The router's JSONL request log (read it with localstack.serving.ab_router.read_telemetry)."""
        state, _ = self._load(endpoint)
        return Path(state.telemetry_file)

    def delete_endpoint(self, endpoint: str) -> None:
        """Stop the router and every deployment, and forget the endpoint."""
        with self._lock(endpoint):
            try:
                state, etag = self._load(endpoint)
            except EndpointNotFound:
                return
            self._stop_endpoint(state)
            self.blobs.delete(DEPLOYMENTS, endpoint_state_name(state.use_case, endpoint), if_match=etag)
            self._use_cases.pop(endpoint, None)

    def stop_all(self) -> list[str]:
        """Stop the processes of every local endpoint recorded in storage; returns the endpoints."""
        stopped = []
        for info in self.blobs.list(DEPLOYMENTS):
            state = self._parse(info.name)
            if state is None:
                continue
            with self._lock(state.endpoint):
                self._stop_endpoint(state)
            stopped.append(state.endpoint)
        return stopped

    # --- internals -----------------------------------------------------------------------------------------------

    def _lock(self, endpoint: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(endpoint, threading.Lock())

    def _endpoint_dir(self, use_case: str, endpoint: str) -> Path:
        return self.work_dir / "endpoints" / safe_segment(use_case) / safe_segment(endpoint)

    def _load(self, endpoint: str) -> tuple[LocalEndpointState, str]:
        use_case = self._use_cases.get(endpoint) or self._find_use_case(endpoint)
        try:
            data, etag = self.blobs.read(DEPLOYMENTS, endpoint_state_name(use_case, endpoint))
        except BlobNotFound:
            self._use_cases.pop(endpoint, None)
            raise EndpointNotFound(f"no local endpoint {endpoint!r}") from None
        self._use_cases[endpoint] = use_case
        return LocalEndpointState.model_validate_json(data), etag

    def _find_use_case(self, endpoint: str) -> str:
        """Endpoint names are unique (as in an Azure region), so the state's folder tells the use case."""
        suffix = f"/{safe_segment(endpoint)}.json"
        for info in self.blobs.list(DEPLOYMENTS):
            if info.name.endswith(suffix) and self._parse(info.name) is not None:
                return info.name.split("/", 1)[0]
        raise EndpointNotFound(f"no local endpoint {endpoint!r}")

    def _parse(self, name: str) -> LocalEndpointState | None:
        """The local endpoint state in `name`, or None for any other record (or one deleted meanwhile)."""
        if name.count("/") != 1 or not name.endswith(".json"):
            return None
        try:
            return LocalEndpointState.model_validate_json(self.blobs.read(DEPLOYMENTS, name)[0])
        except (BlobNotFound, ValidationError):
            return None

    def _save(self, state: LocalEndpointState, etag: str | None) -> None:
        state.updated_at = self.clock.now()
        name = endpoint_state_name(state.use_case, state.endpoint)
        try:
            self.blobs.write(DEPLOYMENTS, name, state.model_dump_json(indent=2).encode(),
                             if_match=etag, if_absent=etag is None)
        except PreconditionFailed:
            raise DeploymentError(f"{DEPLOYMENTS}/{name} changed while deploying (another instance?); retry") from None
        self._use_cases[state.endpoint] = state.use_case

    def _ensure_endpoint(self, request: DeploymentRequest) -> tuple[LocalEndpointState, str]:
        endpoint = request.config.endpoint_name
        if endpoint_state_name(request.use_case, endpoint) == deployed_state_name(request.use_case):
            raise DeploymentError(f"endpoint name {endpoint!r} is reserved locally: {DEPLOYMENTS}/"
                                  f"{deployed_state_name(request.use_case)} records what serves production")
        try:
            state, etag = self._load(endpoint)
        except EndpointNotFound:
            folder = self._endpoint_dir(request.use_case, endpoint)
            state = LocalEndpointState(
                use_case=request.use_case, endpoint=endpoint, router_port=0, router_pid=None,
                telemetry_file=str(folder / "telemetry.jsonl"), seed=self.router_seed,
                request_timeout_ms=request.config.request_timeout_ms, updated_at=self.clock.now(),
            )
            self._start_router(state)
            self._save(state, None)
            return self._load(endpoint)
        if state.use_case != request.use_case:
            raise DeploymentError(f"endpoint {endpoint} belongs to use case {state.use_case}, not {request.use_case}")
        if self._revive(state):
            self._save(state, etag)
            return self._load(endpoint)
        return state, etag

    def _start_router(self, state: LocalEndpointState) -> None:
        from localstack.serving.ab_router import RouterProcess
        from localstack.serving.flow_server import port_free

        folder = self._endpoint_dir(state.use_case, state.endpoint)
        # The same port again when it is free, so callers holding the scoring URI keep working.
        port = state.router_port if state.router_port and port_free(state.router_port) else None
        router = RouterProcess(state.endpoint, Path(state.telemetry_file), port=port,
                               seed=state.seed, log_file=folder / "router.log",
                               upstream_timeout_seconds=state.request_timeout_ms / 1000)
        router.start().wait_ready(30)
        self._processes[(state.endpoint, "")] = router
        state.router_port, state.router_pid = router.port, router.pid

    def _router_url(self, state: LocalEndpointState) -> str:
        return f"http://127.0.0.1:{state.router_port}"

    def _router(self, state: LocalEndpointState) -> Any:
        from localstack.serving.ab_router import RouterClient

        return RouterClient(self._router_url(state))

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

    def _serving(self, state: LocalEndpointState, name: str) -> bool:
        deployment = state.deployments[name]
        if not self._alive(state.endpoint, name, deployment.pid, deployment.port):
            return False
        from localstack.serving.flow_server import ServingError

        try:
            return self._router(state).deployments().get(name) == f"http://127.0.0.1:{deployment.port}"
        except ServingError:
            return False

    def _revive(self, state: LocalEndpointState) -> bool:
        """Restart whatever of the endpoint no longer answers (after a reboot, a crash, `stop_all`); True when
        something was restarted and the state changed."""
        changed = False
        if not self._alive(state.endpoint, "", state.router_pid, state.router_port):
            self._start_router(state)
            changed = True
        router = self._router(state)
        routed = router.deployments()
        dead = [d for d in state.deployments.values() if not self._alive(state.endpoint, d.name, d.pid, d.port)]
        servers = [self._server(state.use_case, state.endpoint, d.name, Path(d.flow_dir), None,
                                d.environment_variables) for d in dead]
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

    def _server(self, use_case: str, endpoint: str, name: str, flow_copy: Path, port: int | None,
                environment: Mapping[str, str] | None = None) -> Any:
        import os

        from localstack.serving.flow_server import FlowServer

        env = {**os.environ, **(self.secrets_env or {}), **(environment or {})}
        return FlowServer(flow_copy, name=f"{endpoint}/{name}", port=port,
                          connections=self.connections_for(use_case), environment=env,
                          log_file=flow_copy.parent / "server.log")

    def _start_server(self, request: DeploymentRequest) -> tuple[Any, Path]:
        from localstack.serving.flow_server import ServingError

        endpoint = request.config.endpoint_name
        # The deployment's own copy of the flow (Azure ML copies the model too): a restart needs the files.
        folder = (self._endpoint_dir(request.use_case, endpoint) / safe_segment(request.deployment_name)
                  / safe_segment(request.flow_version))
        flow_copy = folder / "flow"
        if flow_copy.exists():
            shutil.rmtree(flow_copy)
        shutil.copytree(request.flow_dir, flow_copy, ignore=_COPY_IGNORED)
        try:
            server = self._server(request.use_case, endpoint, request.deployment_name, flow_copy, None,
                                  request.config.environment_variables)
            server.start().wait_ready(self.start_timeout_seconds)
        except ServingError as failure:
            raise DeploymentFailed(f"deployment {request.deployment_name} of {request.flow_name} "
                                   f"v{request.flow_version} did not start", logs=redact_text(str(failure))) from None
        return server, flow_copy

    def _stop(self, process: Any, deployment: LocalDeploymentState | None) -> None:
        if process is None and deployment is not None and deployment.pid is not None:
            from localstack.serving.flow_server import ServerProcess

            process = ServerProcess.adopt(deployment.name, deployment.pid, deployment.port)
        if process is not None:
            process.stop()

    def _stop_endpoint(self, state: LocalEndpointState) -> None:
        for name, deployment in state.deployments.items():
            self._stop(self._processes.pop((state.endpoint, name), None), deployment)
        router = self._processes.pop((state.endpoint, ""), None)
        if router is None and state.router_pid is not None:
            from localstack.serving.flow_server import ServerProcess

            router = ServerProcess.adopt(state.endpoint, state.router_pid, state.router_port)
        if router is not None:
            router.stop()

    def _deployed(self, state: LocalEndpointState, name: str) -> Deployed:
        deployment = state.deployments[name]
        return Deployed(
            endpoint=state.endpoint, deployment=name, scoring_uri=self._router_url(state) + "/score",
            traffic=dict(state.traffic),
            details={"target": "local", "flow_name": deployment.flow_name, "flow_version": deployment.flow_version,
                     "url": f"http://127.0.0.1:{deployment.port}", "pid": str(deployment.pid),
                     "log_file": deployment.log_file, "telemetry_file": state.telemetry_file},
        )
