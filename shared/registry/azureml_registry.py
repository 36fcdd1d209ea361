"""The registry on Azure ML (azure-ai-ml): datasets as data assets, flows as custom models.

- Data: a `uri_file` data asset whose path is the source. Azure ML cannot read our `blob://container/path`
  (azure-ai-ml takes any `scheme://netloc` as a remote URL and passes it to the service unchanged), so the
  adapter maps it with `datastore_uri_for`: `https_paths(account_url)` gives
  `https://<account>.blob.core.windows.net/<container>/<path>` (readers need Storage Blob Data Reader on the
  account), `datastore_paths({container: datastore})` gives `azureml://datastores/<datastore>/paths/<path>` (a
  datastore registered on that container). The original URI is kept in the property `genaiops.source_uri`.
- Flows: a custom model whose files are the flow folder (without the files the hash ignores), with the property
  `azureml.promptflow.source_flow_id` that studio's endpoint Test tab uses to recognise a prompt flow; chat flows
  can add `azureml.promptflow.mode: chat`, `azureml.promptflow.chat_input`, `azureml.promptflow.chat_output` via
  `properties`. Deploy it as `azureml:<name>:<version>` with the promptflow serving image.
  (`is-promptflow: true` is left out on purpose: it marks gallery flows and evaluators, not deployable models.)

`get(label="latest")` is the most recently created version. The SDK reports a missing asset in three shapes
(ResourceNotFoundError; a ValidationException RESOURCE_NOT_FOUND; data wraps that one in an MlException); all
three mean "no version yet". Azure ML has no create-if-absent for a version, so two writers racing for the same
number are told apart only when the service refuses the second PUT (409), after which we re-read and retry;
the message bus's idempotency already keeps redeliveries of one event from racing.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.ports import Clock
from shared.registry.hashing import directory_hash, list_files
from shared.registry.models import DataVersion, FlowVersion
from shared.registry.port import (
    CONTENT_HASH_TAG,
    EMPTY_TAGS,
    RegistryConflict,
    next_version,
    validate_name,
)

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.ai.ml.entities import Data, Model
    from azure.core.credentials import TokenCredential

SOURCE_URI_PROPERTY = "genaiops.source_uri"
PREVIOUS_VERSION_PROPERTY = "genaiops.previous_version"
SOURCE_FLOW_PROPERTY = "azureml.promptflow.source_flow_id"
_OURS = (SOURCE_URI_PROPERTY, PREVIOUS_VERSION_PROPERTY)
MAX_ATTEMPTS = 5


def reject_blob_uris(uri: str) -> str:
    """The default mapping: any URI Azure ML understands passes; blob:// needs a real mapping."""
    if uri.startswith("blob://"):
        raise ValueError(f"{uri}: Azure ML cannot read blob:// URIs; build the registry with "
                         "datastore_uri_for=https_paths(account_url) or datastore_paths({container: datastore})")
    return uri


def https_paths(account_url: str) -> Callable[[str], str]:
    """blob://container/path -> <account_url>/container/path (e.g. https://acct.blob.core.windows.net)."""
    base = account_url.rstrip("/")

    def convert(uri: str) -> str:
        if not uri.startswith("blob://"):
            return uri
        return f"{base}/{quote(uri.removeprefix('blob://'), safe='/')}"

    return convert


def datastore_paths(datastores: Mapping[str, str]) -> Callable[[str], str]:
    """blob://container/path -> azureml://datastores/<datastore of container>/paths/path."""

    def convert(uri: str) -> str:
        if not uri.startswith("blob://"):
            return uri
        container, _, path = uri.removeprefix("blob://").partition("/")
        if container not in datastores:
            raise ValueError(f"{uri}: no Azure ML datastore configured for container {container!r}")
        return f"azureml://datastores/{datastores[container]}/paths/{path}"

    return convert


class AzureMLRegistry:
    def __init__(self, ml_client: MLClient, datastore_uri_for: Callable[[str], str] = reject_blob_uris, *,
                 clock: Clock | None = None) -> None:
        self._ml = ml_client
        self._uri_for = datastore_uri_for
        self._clock = clock

    # --- data -------------------------------------------------------------------------------------------------

    def latest_data(self, name: str) -> DataVersion | None:
        validate_name(name)
        try:
            return self._data_version(self._ml.data.get(name=name, label="latest"))
        except AzureError as error:
            if _is_not_found(error):
                return None
            raise

    def register_data(self, name: str, *, source_uri: str, content_hash: str, description: str = "",
                      tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[DataVersion, bool]:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        path = self._uri_for(source_uri)
        for _ in range(MAX_ATTEMPTS):
            latest = self.latest_data(name)
            if latest is not None and latest.content_hash == content_hash:
                return latest, False
            previous = latest.version if latest else None
            properties = {SOURCE_URI_PROPERTY: source_uri}
            if previous:
                properties[PREVIOUS_VERSION_PROPERTY] = previous
            asset = Data(name=name, version=next_version(name, previous), type=AssetTypes.URI_FILE, path=path,
                         description=description, tags={**tags, CONTENT_HASH_TAG: content_hash},
                         properties=properties)
            try:
                return self._data_version(self._ml.data.create_or_update(asset)), True
            except (ResourceExistsError, HttpResponseError) as error:
                if not _is_conflict(error):
                    raise
        raise RegistryConflict(f"data {name}: lost the race for a new version {MAX_ATTEMPTS} times")

    # --- flows ------------------------------------------------------------------------------------------------

    def latest_flow(self, name: str) -> FlowVersion | None:
        validate_name(name)
        try:
            return self._flow_version(self._ml.models.get(name=name, label="latest"))
        except AzureError as error:
            if _is_not_found(error):
                return None
            raise

    def flow(self, name: str, version: str) -> FlowVersion | None:
        validate_name(name)
        try:
            return self._flow_version(self._ml.models.get(name=name, version=version))
        except AzureError as error:
            if _is_not_found(error):
                return None
            raise

    def register_flow(self, name: str, *, flow_dir: Path, content_hash: str, properties: Mapping[str, str],
                      tags: Mapping[str, str] = EMPTY_TAGS) -> tuple[FlowVersion, bool]:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        for _ in range(MAX_ATTEMPTS):
            latest = self.latest_flow(name)
            if latest is not None and latest.content_hash == content_hash:
                return latest, False
            previous = latest.version if latest else None
            stored = {SOURCE_FLOW_PROPERTY: name, **properties}
            if previous:
                stored[PREVIOUS_VERSION_PROPERTY] = previous
            with _staged(flow_dir, content_hash) as staged:
                model = Model(name=name, version=next_version(name, previous), type=AssetTypes.CUSTOM_MODEL,
                              path=str(staged), description=f"Prompt flow {name} ({content_hash})",
                              properties=stored, tags={**tags, CONTENT_HASH_TAG: content_hash})
                try:
                    return self._flow_version(self._ml.models.create_or_update(model)), True
                except (ResourceExistsError, HttpResponseError) as error:
                    if not _is_conflict(error):
                        raise
        raise RegistryConflict(f"flow {name}: lost the race for a new version {MAX_ATTEMPTS} times")

    # --- mapping ----------------------------------------------------------------------------------------------

    def _data_version(self, asset: Data) -> DataVersion:
        tags = {str(k): str(v) for k, v in (asset.tags or {}).items()}
        properties = dict(asset.properties or {})
        return DataVersion(
            name=str(asset.name), version=str(asset.version), content_hash=tags.get(CONTENT_HASH_TAG),
            source_uri=properties.get(SOURCE_URI_PROPERTY) or str(asset.path), description=asset.description or "",
            tags=tags, created_at=self._created_at(asset), previous_version=properties.get(PREVIOUS_VERSION_PROPERTY),
        )

    def _flow_version(self, model: Model) -> FlowVersion:
        tags = {str(k): str(v) for k, v in (model.tags or {}).items()}
        properties = {str(k): str(v) for k, v in (model.properties or {}).items()}
        return FlowVersion(
            name=str(model.name), version=str(model.version), content_hash=tags.get(CONTENT_HASH_TAG),
            properties={k: v for k, v in properties.items() if k not in _OURS}, tags=tags,
            created_at=self._created_at(model), artifact_uri=f"azureml:{model.name}:{model.version}",
            previous_version=properties.get(PREVIOUS_VERSION_PROPERTY),
        )

    def _created_at(self, entity: Any) -> datetime:
        context = getattr(entity, "creation_context", None)
        created = getattr(context, "created_at", None)
        if isinstance(created, datetime):
            return created
        return self._clock.now() if self._clock else datetime.now(UTC)


def azureml_registry_from_settings(subscription_id: str, resource_group: str, workspace_name: str,
                                   credential: TokenCredential, *,
                                   datastore_uri_for: Callable[[str], str] = reject_blob_uris) -> AzureMLRegistry:
    from azure.ai.ml import MLClient  # heavy: only when the Azure ML registry is actually used

    client = MLClient(credential=credential, subscription_id=subscription_id, resource_group_name=resource_group,
                      workspace_name=workspace_name)
    return AzureMLRegistry(client, datastore_uri_for)


@contextmanager
def _staged(flow_dir: Path, content_hash: str) -> Iterator[Path]:
    """A copy of exactly the files the hash covers, so the upload is what was hashed (no .promptflow, .runs,
    __pycache__), checked against `content_hash`. The folder keeps the flow's name: it shows in the upload path."""
    with tempfile.TemporaryDirectory(prefix="genaiops-flow-") as scratch:
        staged = Path(scratch) / Path(flow_dir).resolve().name
        staged.mkdir()
        for relative, path in list_files(flow_dir):
            target = staged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        if not any(staged.iterdir()):
            raise ValueError(f"{flow_dir} has no files to register")
        actual = directory_hash(staged)
        if actual != content_hash:
            raise ValueError(f"content_hash {content_hash} does not match {flow_dir} ({actual})")
        yield staged


def _is_not_found(error: BaseException) -> bool:
    from azure.ai.ml.exceptions import ValidationErrorType, ValidationException

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ResourceNotFoundError):
            return True
        if isinstance(seen, ValidationException) and seen.error_type == ValidationErrorType.RESOURCE_NOT_FOUND:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_conflict(error: HttpResponseError | ResourceExistsError) -> bool:
    return isinstance(error, ResourceExistsError) or getattr(error, "status_code", None) == 409
