"""Versioned datasets and flows, registered only when their content changed (see port.py for the semantics).

Two adapters with the same behaviour: BlobRegistry (blob storage; Azurite locally) and AzureMLRegistry (Azure ML
data assets and models; azure-ai-ml loads only when it is built, so importing this package stays cheap)."""

from shared.registry.azureml_registry import (
    AzureMLRegistry,
    azureml_registry_from_settings,
    datastore_paths,
    https_paths,
)
from shared.registry.blob_registry import BlobRegistry
from shared.registry.hashing import DEFAULT_IGNORE, directory_hash, list_files
from shared.registry.models import DataVersion, FlowVersion
from shared.registry.port import (
    CONTENT_HASH_TAG,
    InvalidName,
    Registry,
    RegistryConflict,
    RegistryError,
)

__all__ = [
    "CONTENT_HASH_TAG",
    "DEFAULT_IGNORE",
    "AzureMLRegistry",
    "BlobRegistry",
    "DataVersion",
    "FlowVersion",
    "InvalidName",
    "Registry",
    "RegistryConflict",
    "RegistryError",
    "azureml_registry_from_settings",
    "datastore_paths",
    "directory_hash",
    "https_paths",
    "list_files",
]
