"""Azure SDKs at their boundary, for tests: a token credential, LRO pollers, and an in-memory Azure ML workspace.

The workspace answers azure-ai-ml's online endpoint / online deployment / model / data / workspace connection
operations through autospecs of the real operation classes, so a call with a wrong signature fails as it would
against Azure; the entities it keeps are the SDK objects the app sent. A PUT takes effect at once (provisioning
state Succeeded). Each deployment is "served" by a stand-in for the prompt flow serving container: an HTTP server
on 127.0.0.1 that checks the endpoint key and answers with the deployed flow's declared outputs (typed
placeholders — the flow itself does not run there) and logged as Azure ML's AmlOnlineEndpointTrafficLog would
be (`traffic`, which tests/fakes/log_analytics.py queries). Every call is journaled to `calls.jsonl` in the state
folder, so a test in another process can assert what the app asked Azure ML for.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import create_autospec

import requests
import yaml
from azure.core.credentials import AccessToken
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.core.polling import LROPoller
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

ENDPOINT_KEY = "fake-endpoint-key"  # what get_keys hands out; the serving stand-in insists on it
_PLACEHOLDERS: dict[str, Any] = {"string": "", "int": 0, "double": 0.0, "bool": False, "list": [], "object": {}}


class FakeCredential:
    """A TokenCredential (DefaultAzureCredential / ManagedIdentityCredential stand-in) that remembers the scopes."""

    TOKEN = "not-a-real-token"

    def __init__(self, *_: Any, **__: Any) -> None:
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes += scopes
        return AccessToken(self.TOKEN, int(time.time()) + 3600)


def poller(result: Any = None, *, done: bool = True, error: Exception | None = None) -> Any:
    """An LROPoller autospec: finished (or not) with `result`, or failing with `error` on wait."""
    fake = create_autospec(LROPoller, instance=True)
    fake.done.return_value = done
    if error is not None:
        fake.wait.side_effect = error
    fake.result.return_value = result
    return fake


def not_found(what: str = "thing") -> ResourceNotFoundError:
    return ResourceNotFoundError(f"{what} not found")  # what the real operations raise for a missing entity


class ArmAdapter(HTTPAdapter):
    """Azure Resource Manager for an SDK client on a RequestsTransport (`arm_transport`): answers every request with
    one status and JSON body and keeps (method, url, JSON body) of each. Never touches the network."""

    def __init__(self, status: int = 200, body: dict[str, Any] | None = None,
                 on_send: Callable[[str, str, dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        self.status, self.body = status, json.dumps(body or {"properties": {}}).encode()
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self._on_send = on_send

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        sent = (str(request.method), str(request.url), json.loads(request.body or b"{}"))
        self.sent.append(sent)
        if self._on_send is not None:
            self._on_send(*sent)
        raw = HTTPResponse(body=BytesIO(self.body), status=self.status, preload_content=False,
                           headers={"Content-Type": "application/json", "Content-Length": str(len(self.body))})
        return self.build_response(request, raw)


def arm_transport(adapter: ArmAdapter) -> RequestsTransport:
    """The SDK's real HTTP transport on a session whose adapter is `adapter`."""
    session = requests.Session()
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=False)


class AzureMLWorkspace:
    """One workspace's online endpoints, deployments, models, data assets and connections, in memory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.resource_id = ""  # known once a client is attached
        self.endpoints: dict[str, Any] = {}
        self.deployments: dict[tuple[str, str], Any] = {}
        self.assets: dict[str, dict[str, dict[str, Any]]] = {"model": {}, "data": {}}
        self.connections: dict[str, Any] = {}
        self.build_contexts: dict[tuple[str, str], Path] = {}  # deployments of an image built from a context
        self.traffic: list[dict[str, Any]] = []  # one row per scoring request, AmlOnlineEndpointTrafficLog columns
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # --- wiring ----------------------------------------------------------------------------------------------

    def attach(self, client: MLClient) -> MLClient:
        """Answer `client`'s operations from this workspace."""
        from azure.ai.ml.operations import (
            DataOperations,
            ModelOperations,
            OnlineDeploymentOperations,
            OnlineEndpointOperations,
            WorkspaceConnectionsOperations,
        )

        endpoints = create_autospec(OnlineEndpointOperations, instance=True)
        endpoints.get.side_effect = self._get_endpoint
        endpoints.begin_create_or_update.side_effect = self._put_endpoint
        endpoints.get_keys.side_effect = self._get_keys
        deployments = create_autospec(OnlineDeploymentOperations, instance=True)
        deployments.get.side_effect = self._get_deployment
        deployments.begin_create_or_update.side_effect = self._put_deployment
        deployments.get_logs.return_value = ""
        models = create_autospec(ModelOperations, instance=True)
        models.get.side_effect = lambda name, version=None, label=None: self._get_asset("model", name, version)
        models.create_or_update.side_effect = lambda model: self._put_asset("model", model)
        data = create_autospec(DataOperations, instance=True)
        data.get.side_effect = lambda name, version=None, label=None: self._get_asset("data", name, version)
        data.create_or_update.side_effect = lambda asset: self._put_asset("data", asset)
        connections = create_autospec(WorkspaceConnectionsOperations, instance=True)
        connections.create_or_update.side_effect = self._put_connection
        self.resource_id = (f"/subscriptions/{client.subscription_id}/resourceGroups/{client.resource_group_name}"
                            f"/providers/Microsoft.MachineLearningServices/workspaces/{client.workspace_name}")
        client._online_endpoints, client._online_deployments = endpoints, deployments
        client._models, client._data, client._connections = models, data, connections
        return client

    def _journal(self, operation: str, **details: Any) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "calls.jsonl").open("a", encoding="utf-8") as journal:
            journal.write(json.dumps({"operation": operation, **details}, default=str) + "\n")

    # --- online endpoints and deployments --------------------------------------------------------------------

    def _get_endpoint(self, name: str, **_: Any) -> Any:
        with self._lock:
            if name not in self.endpoints:
                raise not_found(f"endpoint {name}")
            return self.endpoints[name]

    def _put_endpoint(self, endpoint: Any, **_: Any) -> Any:
        with self._lock:
            known = {str(name) for (ep, name) in self.deployments if ep == endpoint.name}
            endpoint.traffic = {**dict.fromkeys(known, 0), **(endpoint.traffic or {})}
            endpoint._scoring_uri = f"{self._serving_url()}/{endpoint.name}/score"
            endpoint._provisioning_state = "Succeeded"
            endpoint._id = f"{self.resource_id}/onlineEndpoints/{endpoint.name}"  # the ARM id Azure ML reports
            self.endpoints[endpoint.name] = endpoint
            identity = endpoint.identity
            self._journal("online_endpoints.begin_create_or_update", name=endpoint.name, auth_mode=endpoint.auth_mode,
                          identity_type=getattr(identity, "type", None),
                          identities=[i.resource_id for i in getattr(identity, "user_assigned_identities", None) or []],
                          traffic=endpoint.traffic)
            return poller(endpoint)

    def _get_keys(self, name: str) -> Any:
        from azure.ai.ml.entities import EndpointAuthKeys

        self._get_endpoint(name)
        return EndpointAuthKeys(primary_key=ENDPOINT_KEY, secondary_key=ENDPOINT_KEY + "-2")

    def _get_deployment(self, name: str, endpoint_name: str, **_: Any) -> Any:
        with self._lock:
            if (endpoint_name, name) not in self.deployments:
                raise not_found(f"deployment {endpoint_name}/{name}")
            return self.deployments[(endpoint_name, name)]

    def _put_deployment(self, deployment: Any, **_: Any) -> Any:
        with self._lock:
            endpoint = self._get_endpoint(deployment.endpoint_name)
            deployment._provisioning_state = "Succeeded"
            key = (deployment.endpoint_name, deployment.name)
            self.deployments[key] = deployment
            endpoint.traffic = {deployment.name: 0, **dict(endpoint.traffic or {})}
            build = getattr(deployment.environment, "build", None)
            if build is not None:  # the upload: the SDK sends the build context's files with the deployment
                uploaded = self.state_dir / "environments" / f"{key[0]}-{key[1]}"
                shutil.rmtree(uploaded, ignore_errors=True)
                shutil.copytree(build.path, uploaded)
                self.build_contexts[key] = uploaded
            self._journal("online_deployments.begin_create_or_update", endpoint=deployment.endpoint_name,
                          name=deployment.name, model=str(deployment.model),
                          environment=str(self.build_contexts[key]) if build is not None else
                          str(getattr(deployment.environment, "image", deployment.environment)),
                          environment_variables=dict(deployment.environment_variables or {}))
            return poller(deployment)

    # --- assets ----------------------------------------------------------------------------------------------

    def _get_asset(self, kind: str, name: str, version: str | None) -> Any:
        with self._lock:
            versions = self.assets[kind].get(name, {})
            if not versions:
                raise not_found(f"{kind} {name}")
            if version is None:  # label="latest": the most recent version
                return versions[max(versions, key=int)]
            if version not in versions:
                raise not_found(f"{kind} {name}:{version}")
            return versions[version]

    def _put_asset(self, kind: str, asset: Any) -> Any:
        with self._lock:
            versions = self.assets[kind].setdefault(asset.name, {})
            if str(asset.version) in versions:
                from azure.core.exceptions import ResourceExistsError

                raise ResourceExistsError(f"{kind} {asset.name}:{asset.version} exists")
            if kind == "model":  # the upload: the flow folder is read now, as the SDK uploads it
                target = self.state_dir / "models" / asset.name / str(asset.version)
                shutil.copytree(asset.path, target)
                asset.path = str(target)
            versions[str(asset.version)] = asset
            self._journal(f"{'models' if kind == 'model' else 'data'}.create_or_update", name=asset.name,
                          version=asset.version, path=str(asset.path), tags=dict(asset.tags or {}))
            return asset

    def _put_connection(self, connection: Any, **_: Any) -> Any:
        with self._lock:
            self.connections[connection.name] = connection
            credentials = connection.credentials
            self._journal("connections.create_or_update", name=connection.name, type=connection.type,
                          target=connection.target, credentials=type(credentials).__name__,
                          holds_key=bool(getattr(credentials, "key", None)))
            return connection

    # --- the serving stand-in ----------------------------------------------------------------------------------

    def _serving_url(self) -> str:
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            self._server.daemon_threads = True
            threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-aml-serving").start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def _answer(self, endpoint: str, pinned: str | None) -> tuple[int, dict[str, Any], str]:
        with self._lock:
            traffic = dict(getattr(self.endpoints.get(endpoint), "traffic", None) or {})
            name = pinned or max(traffic, key=lambda deployment: traffic[deployment], default=None)
            deployment = self.deployments.get((endpoint, name or ""))
        if deployment is None:
            return 404, {"error": f"no deployment {name} on endpoint {endpoint}"}, ""
        if deployment.model is None:  # the flow's own image: the flow is in the build context
            flow_dir = self.build_contexts[(endpoint, str(name))] / "flow"
        else:
            _, model_name, version = str(deployment.model).split(":")[-3:]
            flow_dir = Path(self.assets["model"][model_name][version].path)
        flow = yaml.safe_load((flow_dir / "flow.dag.yaml").read_text())
        outputs = {key: _PLACEHOLDERS.get(str((spec or {}).get("type")), "")
                   for key, spec in (flow.get("outputs") or {}).items() if not (spec or {}).get("evaluation_only")}
        return 200, outputs, str(name)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        workspace = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                started, request_id = time.monotonic(), str(uuid.uuid4())
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                endpoint = self.path.strip("/").split("/")[0]
                if self.headers.get("Authorization") != f"Bearer {ENDPOINT_KEY}":
                    status, body, served = 401, {"error": "missing or wrong endpoint key"}, ""
                else:
                    status, body, served = workspace._answer(endpoint, self.headers.get("azureml-model-deployment"))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-request-id", request_id)
                if served:
                    self.send_header("azureml-model-deployment", served)
                self.end_headers()
                self.wfile.write(payload)
                with workspace._lock:
                    workspace.traffic.append({
                        "EndpointName": endpoint, "TimeGenerated": datetime.now(UTC).isoformat(),
                        "Method": "POST", "Path": self.path.removeprefix(f"/{endpoint}"),  # the scoring URI's
                        "DeploymentName": served, "ResponseCode": status,
                        "ResponseCodeReason": self.responses.get(status, ("",))[0],
                        "TotalDurationMs": round((time.monotonic() - started) * 1000),
                        "XRequestId": request_id, "XMSClientRequestId": ""})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        return Handler

