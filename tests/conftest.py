"""Shared fixtures: real services on free ports in a temporary folder, started once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localstack.stack import LocalStack, Ports
from shared.adapters.azure_blob import AzureBlobStore
from shared.ports import BlobStore
from tests.fakes.memory import ManualClock

# Every test carries its folder's marker (its tier), and the marker of each service its fixtures start, so
# `-m "not azurite and not broker"` selects what runs without them, in whatever folder it lives.
FOLDER_MARKERS = {"unit": "unit", "infra": "infra", "storage": "azurite", "flows": "flows", "localstack": "localstack",
                  "e2e": "e2e", "browser": "browser", "model": "model", "packaged": "packaged"}
SERVICE_FIXTURES = {"storage_stack": "azurite", "broker": "broker"}
TESTS_DIR = Path(__file__).resolve().parent
# Folders in the order they run, slowest files first: `make test` hands whole files to its workers (xdist
# --dist loadfile) in this order, so the minutes-long packaged and e2e files start at once and the many short unit
# files fill in at the end, instead of one worker finishing a long e2e file while the other waits.
SLOWEST_FIRST = ("packaged", "e2e", "flows", "browser", "model", "localstack", "storage", "infra", "unit")


def _folder(item: pytest.Item) -> str:
    return item.path.resolve().relative_to(TESTS_DIR).parts[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = _folder(item)
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
        for fixture in SERVICE_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(SERVICE_FIXTURES[fixture])
    order = {folder: rank for rank, folder in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: order.get(_folder(item), len(order)))  # stable: files keep their order within


@pytest.fixture(scope="session")
def storage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Azurite alone, for storage-level tests."""
    stack = LocalStack(state_dir=tmp_path_factory.mktemp("azurite"), ports=Ports.free(), with_model=False)
    stack.start_azurite()
    yield stack
    stack.down()


@pytest.fixture(scope="session")
def blob_store(storage_stack: LocalStack) -> BlobStore:
    from azure.storage.blob import BlobServiceClient

    return AzureBlobStore(BlobServiceClient.from_connection_string(storage_stack.storage_connection_string))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
