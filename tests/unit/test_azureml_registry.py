"""The Azure ML registry at the SDK boundary: a real MLClient (fake credential, no network) whose data/models
operations are autospecs of the real classes, so a call with a wrong signature fails; the not-found paths go
through the real operations against a fake HTTP transport, so they see the exceptions the SDK really raises."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import create_autospec

import pytest
import requests
from azure.ai.ml import MLClient
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Data, Model
from azure.ai.ml.entities._system_data import SystemData
from azure.ai.ml.operations import DataOperations, ModelOperations
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse

from shared.registry.azureml_registry import (
    AzureMLRegistry,
    azureml_registry_from_settings,
    datastore_paths,
    https_paths,
    reject_blob_uris,
)
from shared.registry.hashing import directory_hash
from shared.registry.port import InvalidName, RegistryError
from tests.fakes.azure_sdk import FakeCredential
from tests.fakes.memory import ManualClock

ROOT = Path(__file__).resolve().parents[2]
HASH_A = "sha256:" + "a" * 64
HASH_B = "sha256:" + "b" * 64
CREATED = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)


class CannedAdapter(HTTPAdapter):
    """Answers every request with one status and JSON body; records what was asked. Never touches the network."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__()
        self.status, self.body, self.requests = status, json.dumps(body).encode(), []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.requests.append((request.method, request.url))
        raw = HTTPResponse(body=io.BytesIO(self.body), status=self.status, preload_content=False,
                           headers={"Content-Type": "application/json", "Content-Length": str(len(self.body))})
        return self.build_response(request, raw)


def canned(status: int, body: dict[str, Any]) -> tuple[RequestsTransport, CannedAdapter]:
    """The SDK's real HTTP transport on a requests session whose adapter is canned."""
    adapter, session = CannedAdapter(status, body), requests.Session()
    session.mount("https://", adapter)
    return RequestsTransport(session=session, session_owner=False), adapter


def ml_client(transport: RequestsTransport | None = None) -> MLClient:
    extra = {"transport": transport} if transport else {}
    return MLClient(FakeCredential(), "00000000-0000-0000-0000-000000000000", "rg", "ws", **extra)


@pytest.fixture
def client() -> MLClient:
    client = ml_client()
    client._data = create_autospec(DataOperations, instance=True)
    client._models = create_autospec(ModelOperations, instance=True)
    return client


@pytest.fixture
def registry(client: MLClient) -> AzureMLRegistry:
    return AzureMLRegistry(client, https_paths("https://acct.blob.core.windows.net"), clock=ManualClock())


def stored_data(version: str, content_hash: str | None, **extra: Any) -> Data:
    tags = {"content_hash": content_hash} if content_hash else {}
    return Data(name="math-train", version=version, type=AssetTypes.URI_FILE, tags=tags,
                path="https://acct.blob.core.windows.net/datasets/math/train.jsonl",
                creation_context=SystemData(created_at=CREATED), **extra)


def stored_model(version: str, content_hash: str) -> Model:
    return Model(name="math", version=version, type=AssetTypes.CUSTOM_MODEL, path="azureml://somewhere/flow",
                 tags={"content_hash": content_hash}, properties={"azureml.promptflow.source_flow_id": "math"},
                 creation_context=SystemData(created_at=CREATED))


def not_found(kind: str) -> Exception:
    """What the real operations raise for a missing asset (see the transport tests below)."""
    try:
        transport, _ = canned(404, {"error": {"code": "UserError", "message": "nope"}})
        ops = getattr(ml_client(transport), kind)
        ops.get(name="x", label="latest")
    except Exception as error:  # noqa: BLE001 - capturing whatever the SDK raises is the point
        return error
    raise AssertionError("expected the SDK to raise")


def flow_dir(tmp_path: Path) -> Path:
    root = tmp_path / "math_flow"
    (root / "prompts").mkdir(parents=True)
    (root / "flow.dag.yaml").write_text("inputs: {}\n")
    (root / "prompts" / "answer.jinja2").write_text("{{q}}\n")
    (root / ".promptflow").mkdir()
    (root / ".promptflow" / "flow.tools.json").write_text("{}")
    return root


# --- data ---------------------------------------------------------------------------------------------------------

def test_first_data_registration_creates_version_1_as_uri_file(registry: AzureMLRegistry, client: Any) -> None:
    client.data.get.side_effect = not_found("data")
    client.data.create_or_update.side_effect = lambda data: data  # the service echoes the entity back

    version, created = registry.register_data("math-train", source_uri="blob://datasets/math/train.jsonl",
                                              content_hash=HASH_A, description="math", tags={"team": "x"})

    client.data.get.assert_called_once_with(name="math-train", label="latest")
    sent: Data = client.data.create_or_update.call_args.args[0]
    assert isinstance(sent, Data)
    assert (sent.name, sent.version, sent.type) == ("math-train", "1", AssetTypes.URI_FILE)
    assert sent.path == "https://acct.blob.core.windows.net/datasets/math/train.jsonl"
    assert sent.tags == {"team": "x", "content_hash": HASH_A}
    assert sent.properties == {"genaiops.source_uri": "blob://datasets/math/train.jsonl"}
    assert sent.description == "math"
    assert created is True
    assert (version.version, version.content_hash, version.previous_version) == ("1", HASH_A, None)
    assert version.source_uri == "blob://datasets/math/train.jsonl"
    assert version.created_at == ManualClock().now()  # no creation context echoed: the adapter's clock


def test_unchanged_data_reuses_the_latest_version(registry: AzureMLRegistry, client: Any) -> None:
    client.data.get.return_value = stored_data("3", HASH_A)
    version, created = registry.register_data("math-train", source_uri="blob://datasets/math/train.jsonl",
                                              content_hash=HASH_A)
    assert (version.version, created, version.created_at) == ("3", False, CREATED)
    client.data.create_or_update.assert_not_called()


def test_changed_data_gets_latest_plus_one(registry: AzureMLRegistry, client: Any) -> None:
    client.data.get.return_value = stored_data("9", HASH_A)
    client.data.create_or_update.side_effect = lambda data: data
    version, created = registry.register_data("math-train", source_uri="azureml://datastores/d/paths/x.jsonl",
                                              content_hash=HASH_B)
    sent: Data = client.data.create_or_update.call_args.args[0]
    assert (sent.version, sent.path, created) == ("10", "azureml://datastores/d/paths/x.jsonl", True)
    assert sent.properties["genaiops.previous_version"] == "9"
    assert version.previous_version == "9"


def test_a_version_registered_by_hand_without_the_tag_counts_as_changed(registry: AzureMLRegistry,
                                                                        client: Any) -> None:
    client.data.get.return_value = stored_data("4", None)
    assert registry.latest_data("math-train").content_hash is None
    client.data.create_or_update.side_effect = lambda data: data
    version, created = registry.register_data("math-train", source_uri="blob://d/x", content_hash=HASH_A)
    assert (version.version, created) == ("5", True)


def test_non_numeric_latest_version_is_refused(registry: AzureMLRegistry, client: Any) -> None:
    client.data.get.return_value = stored_data("2024-01-01", HASH_A)
    with pytest.raises(RegistryError, match="not a number"):
        registry.register_data("math-train", source_uri="blob://d/x", content_hash=HASH_B)


def test_lost_race_for_a_version_rereads_and_returns_the_winner(registry: AzureMLRegistry, client: Any) -> None:
    client.data.get.side_effect = [not_found("data"), stored_data("1", HASH_A)]
    client.data.create_or_update.side_effect = ResourceExistsError("version 1 exists")
    version, created = registry.register_data("math-train", source_uri="blob://d/x", content_hash=HASH_A)
    assert (version.version, created) == ("1", False)


def test_other_service_errors_propagate(registry: AzureMLRegistry, client: Any) -> None:
    client.data.get.side_effect = not_found("data")
    client.data.create_or_update.side_effect = HttpResponseError("forbidden")
    with pytest.raises(HttpResponseError):
        registry.register_data("math-train", source_uri="blob://d/x", content_hash=HASH_A)


def test_names_that_azure_ml_or_a_blob_path_would_reject_are_refused(registry: AzureMLRegistry) -> None:
    for bad in ("math/train", "", "-x", "x" * 256, "x."):
        with pytest.raises(InvalidName):
            registry.latest_data(bad)


# --- the SDK's real not-found behaviour -----------------------------------------------------------------------

def test_missing_data_asset_is_none_through_the_real_sdk() -> None:
    transport, adapter = canned(404, {"error": {"code": "UserError", "message": "not found"}})
    assert AzureMLRegistry(ml_client(transport)).latest_data("math-train") is None
    assert "/workspaces/ws/data/math-train?" in adapter.requests[0][1]


def test_missing_model_is_none_through_the_real_sdk() -> None:
    transport, adapter = canned(404, {"error": {"code": "UserError", "message": "not found"}})
    assert AzureMLRegistry(ml_client(transport)).latest_flow("math") is None
    assert "/workspaces/ws/models/math/versions?" in adapter.requests[0][1]


def test_model_with_no_versions_is_none_through_the_real_sdk() -> None:
    transport, _ = canned(200, {"value": []})
    assert AzureMLRegistry(ml_client(transport)).latest_flow("math") is None


def test_other_http_errors_are_not_mistaken_for_missing() -> None:
    transport, _ = canned(403, {"error": {"code": "AuthorizationFailed", "message": "no"}})
    with pytest.raises(HttpResponseError):
        AzureMLRegistry(ml_client(transport)).latest_flow("math")


# --- flows ----------------------------------------------------------------------------------------------------------

def test_flow_is_registered_as_a_custom_model_with_exactly_the_hashed_files(registry: AzureMLRegistry, client: Any,
                                                                             tmp_path: Path) -> None:
    source = flow_dir(tmp_path)
    uploaded: dict[str, Any] = {}

    def create(model: Model) -> Model:
        staged = Path(model.path)  # the SDK uploads this folder during the call: look at it now
        uploaded["files"] = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file())
        uploaded["folder"] = staged.name
        return model

    client.models.get.side_effect = not_found("models")
    client.models.create_or_update.side_effect = create
    content_hash = directory_hash(source)

    version, created = registry.register_flow("math", flow_dir=source, content_hash=content_hash,
                                              properties={"metric.accuracy": "0.9", "variant": "v1"},
                                              tags={"build_id": "42"})

    client.models.get.assert_called_once_with(name="math", label="latest")
    sent: Model = client.models.create_or_update.call_args.args[0]
    assert isinstance(sent, Model)
    assert (sent.name, sent.version, sent.type) == ("math", "1", AssetTypes.CUSTOM_MODEL)
    assert sent.tags == {"build_id": "42", "content_hash": content_hash}
    assert sent.properties == {"azureml.promptflow.source_flow_id": "math", "metric.accuracy": "0.9",
                               "variant": "v1"}
    assert uploaded == {"files": ["flow.dag.yaml", "prompts/answer.jinja2"], "folder": "math_flow"}
    assert not Path(sent.path).exists()  # the staging copy is cleaned up
    assert created is True
    assert version.artifact_uri == "azureml:math:1"
    assert version.properties["variant"] == "v1"


def test_unchanged_flow_reuses_the_latest_model(registry: AzureMLRegistry, client: Any, tmp_path: Path) -> None:
    source = flow_dir(tmp_path)
    client.models.get.return_value = stored_model("2", directory_hash(source))
    version, created = registry.register_flow("math", flow_dir=source, content_hash=directory_hash(source),
                                              properties={})
    assert (version.version, created, version.created_at) == ("2", False, CREATED)
    client.models.create_or_update.assert_not_called()


def test_changed_flow_gets_the_next_version_and_lineage(registry: AzureMLRegistry, client: Any,
                                                        tmp_path: Path) -> None:
    source = flow_dir(tmp_path)
    client.models.get.return_value = stored_model("2", HASH_A)
    client.models.create_or_update.side_effect = lambda model: model
    version, created = registry.register_flow("math", flow_dir=source, content_hash=directory_hash(source),
                                              properties={"azureml.promptflow.source_flow_id": "custom"})
    sent: Model = client.models.create_or_update.call_args.args[0]
    assert (sent.version, sent.properties["azureml.promptflow.source_flow_id"]) == ("3", "custom")
    assert sent.properties["genaiops.previous_version"] == "2"
    assert (version.version, version.previous_version, created) == ("3", "2", True)
    assert "genaiops.previous_version" not in version.properties


def test_a_hash_that_does_not_match_the_folder_is_refused(registry: AzureMLRegistry, client: Any,
                                                          tmp_path: Path) -> None:
    client.models.get.side_effect = not_found("models")
    with pytest.raises(ValueError, match="does not match"):
        registry.register_flow("math", flow_dir=flow_dir(tmp_path), content_hash=HASH_A, properties={})
    client.models.create_or_update.assert_not_called()


# --- wiring ---------------------------------------------------------------------------------------------------------

def test_blob_uris_need_a_mapping() -> None:
    with pytest.raises(ValueError, match="blob://"):
        reject_blob_uris("blob://datasets/a.jsonl")
    assert reject_blob_uris("https://x/y") == "https://x/y"
    to_https = https_paths("https://acct.blob.core.windows.net/")
    assert to_https("blob://datasets/a b.jsonl") == "https://acct.blob.core.windows.net/datasets/a%20b.jsonl"
    to_datastore = datastore_paths({"datasets": "genaiops_datasets"})
    assert to_datastore("blob://datasets/m/a.jsonl") == "azureml://datastores/genaiops_datasets/paths/m/a.jsonl"
    with pytest.raises(ValueError, match="no Azure ML datastore"):
        to_datastore("blob://other/a.jsonl")


def test_registry_from_settings_builds_an_mlclient_for_the_workspace() -> None:
    built = azureml_registry_from_settings("00000000-0000-0000-0000-000000000001", "rg1", "ws1", FakeCredential())
    client = built._ml
    assert isinstance(client, MLClient)
    assert (client.subscription_id, client.resource_group_name, client.workspace_name) == (
        "00000000-0000-0000-0000-000000000001", "rg1", "ws1")


def test_importing_the_registry_does_not_import_azure_ml() -> None:
    probe = "import sys, shared.registry, shared.registry.azureml_registry; print('azure.ai.ml' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    assert output.stdout.strip() == "False"
