"""The Deployer for target `local`: each deployment is a flow server on a 127.0.0.1 port, each endpoint an A/B
router in front of its deployments (localstack/serving), both processes of their own.

State lives in blob storage, `deployments/{use_case}/{endpoint}.json`: the router's and every deployment's port
and pid, flow version, and the traffic. Processes outlive the app that started them, as real endpoints outlive the
Function App; a restarted app reads the state, adopts what still answers and restarts what does not (from its own
copy of the flow, taken at deploy time). Connections are built from the use case's experiment.yaml, their secrets
read from this app's environment (app settings) and handed to the flow server's environment only. The processes
themselves are started, adopted, revived and stopped by local_processes.py; this module keeps the records.

`stop_all()` stops the processes of every local endpoint recorded in storage (`make down`); the state stays, so the
next call on an endpoint starts it again. `delete_endpoint` stops one endpoint and forgets it.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from localstack.deployment.local_processes import LocalProcesses, endpoint_dir, router_client, router_url
from localstack.deployment.local_state import (
    ConnectionsFor,
    LocalDeploymentState,
    LocalEndpointState,
    MaskFieldsFor,
    endpoint_state_name,
    experiment_connections,
)
from shared.blob_layout import DEPLOYMENTS, deployed_state_name, safe_segment
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

__all__ = ["LocalDeployer", "endpoint_state_name", "experiment_connections"]


class LocalDeployer:
    def __init__(self, blobs: BlobStore, clock: Clock, *, work_dir: Path, connections_for: ConnectionsFor,
                 secrets_env: Mapping[str, str] | None = None, router_seed: int | None = None,
                 start_timeout_seconds: float = 120.0, production_log_connection: str | None = None,
                 mask_fields_for: MaskFieldsFor | None = None) -> None:
        """`secrets_env`: settings layered over os.environ for the flow servers (tests; in the app, connection
        secrets are app settings, so os.environ already has them). `router_seed`: seeds every new router's
        traffic draw (tests; None = unpredictable). `production_log_connection`: the storage routers write the
        production log to (None: no production log); `mask_fields_for` what it masks per use case."""
        self.blobs = blobs
        self.clock = clock
        self.work_dir = Path(work_dir)
        self.router_seed = router_seed
        self.processes = LocalProcesses(work_dir=self.work_dir, connections_for=connections_for,
                                        secrets_env=secrets_env, start_timeout_seconds=start_timeout_seconds,
                                        production_log_connection=production_log_connection,
                                        mask_fields_for=mask_fields_for)
        self._use_cases: dict[str, str] = {}  # endpoint -> use case
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
        with self._lock(endpoint):
            state, etag = self._load(endpoint)
            unknown = sorted(set(traffic) - set(state.deployments))
            if unknown:
                raise InvalidTraffic(f"endpoint {endpoint}: no deployment(s) {', '.join(unknown)}")
            split = check_traffic({name: traffic.get(name, 0) for name in state.deployments})
            from localstack.serving.ab_router import RoutingError

            self.processes.revive(state)
            try:
                state.traffic = router_client(state).set_traffic(split)
            except RoutingError as refusal:  # e.g. a share that is not a whole percentage
                raise InvalidTraffic(str(refusal)) from None
            self._save(state, etag)
        return OperationState(kind=OperationKind.TRAFFIC, endpoint=endpoint, traffic=dict(state.traffic),
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
            if current is not None and current.flow_version == request.flow_version and \
                    self.processes.serving(state, name):
                return self._deployed(state, name)  # a redelivered request: it already runs
        # Start outside the endpoint lock: several versions of one endpoint start in parallel.
        server, flow_copy = self.processes.start_server(request)
        with self._lock(endpoint):
            try:
                state, etag = self._load(endpoint)
                replaced = state.deployments.get(name)
                router_client(state).register(name, server.url)
                state.deployments[name] = LocalDeploymentState(
                    name=name, flow_name=request.flow_name, flow_version=request.flow_version,
                    flow_dir=str(flow_copy), environment_variables=dict(request.config.environment_variables),
                    port=server.port, pid=server.pid, log_file=str(server.log_file), started_at=self.clock.now(),
                )
                state.traffic = router_client(state).traffic()
                self._save(state, etag)
            except Exception:
                # Nothing half-deployed: the state still names what ran before, and the next call's revive
                # points the router back at it.
                server.stop()
                raise
            old = self.processes.keep(endpoint, name, server)
            if replaced is not None and replaced.pid != server.pid:  # an update in place: the old one goes
                self.processes.stop(old, replaced)
            return self._deployed(state, name)

    def get_traffic(self, endpoint: str) -> dict[str, int]:
        try:
            state, _ = self._load(endpoint)
        except EndpointNotFound:
            return {}
        from localstack.serving.flow_server import ServingError

        try:
            return router_client(state).traffic()
        except ServingError:  # the router is down: what was last applied
            return {name: state.traffic.get(name, 0) for name in state.deployments}

    def scoring_request(self, endpoint: str, deployment: str | None = None) -> ScoringTarget:
        with self._lock(endpoint):
            state, etag = self._load(endpoint)
            if deployment is not None and deployment not in state.deployments:
                raise DeploymentError(f"endpoint {endpoint} has no deployment {deployment!r}")
            if self.processes.revive(state):
                self._save(state, etag)
        headers = {DEPLOYMENT_HEADER: deployment} if deployment else {}
        return ScoringTarget.model_validate({"url": router_url(state) + "/score", "headers": headers})

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
                router_client(state).unregister(deployment)
            self.processes.stop(self.processes.forget(endpoint, deployment), gone)
            shutil.rmtree(gone.flow_dir, ignore_errors=True)  # the log stays beside it, for the post-mortem
            del state.deployments[deployment]
            state.traffic.pop(deployment, None)
            self._save(state, etag)

    # --- local extras --------------------------------------------------------------------------------------------

    def telemetry_file(self, endpoint: str) -> Path:
        """The router's JSONL request log (RouterTelemetry in telemetry.py reads it)."""
        state, _ = self._load(endpoint)
        return Path(state.telemetry_file)

    def delete_endpoint(self, endpoint: str) -> None:
        """Stop the router and every deployment, and forget the endpoint."""
        with self._lock(endpoint):
            try:
                state, etag = self._load(endpoint)
            except EndpointNotFound:
                return
            self.processes.stop_endpoint(state)
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
                self.processes.stop_endpoint(state)
            stopped.append(state.endpoint)
        return stopped

    # --- internals -----------------------------------------------------------------------------------------------

    def _lock(self, endpoint: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(endpoint, threading.Lock())

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
            folder = endpoint_dir(self.work_dir, request.use_case, endpoint)
            state = LocalEndpointState(
                use_case=request.use_case, endpoint=endpoint, router_port=0, router_pid=None,
                telemetry_file=str(folder / "telemetry.jsonl"), seed=self.router_seed,
                request_timeout_ms=request.config.request_timeout_ms, updated_at=self.clock.now(),
            )
            self.processes.start_router(state)
            self._save(state, None)
            return self._load(endpoint)
        if state.use_case != request.use_case:
            raise DeploymentError(f"endpoint {endpoint} belongs to use case {state.use_case}, not {request.use_case}")
        if self.processes.revive(state):
            self._save(state, etag)
            return self._load(endpoint)
        return state, etag

    def _deployed(self, state: LocalEndpointState, name: str) -> Deployed:
        deployment = state.deployments[name]
        return Deployed(
            endpoint=state.endpoint, deployment=name, scoring_uri=router_url(state) + "/score",
            traffic=dict(state.traffic),
            details={"target": "local", "flow_name": deployment.flow_name, "flow_version": deployment.flow_version,
                     "url": f"http://127.0.0.1:{deployment.port}", "pid": str(deployment.pid),
                     "log_file": deployment.log_file, "telemetry_file": state.telemetry_file},
        )
