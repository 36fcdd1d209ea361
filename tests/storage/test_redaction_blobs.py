"""The last net: a known secret value never reaches storage, whichever code wrote the bytes (real Azurite)."""

import json
import uuid

import pytest

from shared.ports import BlobStore
from shared.redaction import REDACTED, register_secret

pytestmark = pytest.mark.azurite


def test_a_known_secret_is_masked_in_any_blob_written(blob_store: BlobStore, unique: str) -> None:
    secret = f"canary{uuid.uuid4().hex}"
    register_secret(secret)
    document = json.dumps({"line": 3, "outputs": {"answer": f"the key is {secret}"}}).encode()
    blob_store.write("system", f"redaction/{unique}.json", document)
    stored, _ = blob_store.read("system", f"redaction/{unique}.json")
    assert secret.encode() not in stored
    assert json.loads(stored) == {"line": 3, "outputs": {"answer": f"the key is {REDACTED}"}}


def test_bytes_without_a_known_secret_are_stored_unchanged(blob_store: BlobStore, unique: str) -> None:
    data = b'{"question": "What is 2 * 3?", "password=": "not a shape we touch in blobs"}\n\xff\x00'
    blob_store.write("system", f"redaction/{unique}.bin", data, content_type="application/octet-stream")
    assert blob_store.read("system", f"redaction/{unique}.bin")[0] == data
