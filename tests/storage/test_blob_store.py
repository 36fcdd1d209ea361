from __future__ import annotations

import pytest

from shared.ports import BlobNotFound, BlobStore, PreconditionFailed

pytestmark = pytest.mark.azurite


def test_conditional_writes(blob_store: BlobStore, unique: str) -> None:
    etag = blob_store.write("system", f"t/{unique}", b"one", if_absent=True)
    with pytest.raises(PreconditionFailed):
        blob_store.write("system", f"t/{unique}", b"two", if_absent=True)
    new_etag = blob_store.write("system", f"t/{unique}", b"two", if_match=etag)
    with pytest.raises(PreconditionFailed):
        blob_store.write("system", f"t/{unique}", b"three", if_match=etag)  # stale ETag loses
    assert blob_store.read("system", f"t/{unique}") == (b"two", new_etag)


def test_stream_reads_in_chunks_and_missing_blobs_raise(blob_store: BlobStore, unique: str) -> None:
    blob_store.write("system", f"s/{unique}", b"abcdefghij")
    assert list(blob_store.stream("system", f"s/{unique}", chunk_size=4)) == [b"abcd", b"efgh", b"ij"]
    with pytest.raises(BlobNotFound):
        list(blob_store.stream("system", f"s/{unique}-missing"))
    with pytest.raises(BlobNotFound):
        blob_store.read("system", f"s/{unique}-missing")


def test_list_by_prefix(blob_store: BlobStore, unique: str) -> None:
    for name in ("b", "a", "c"):
        blob_store.write("audit", f"{unique}/{name}", b"{}")
    assert [info.name for info in blob_store.list("audit", f"{unique}/")] == [f"{unique}/{n}" for n in "abc"]
    assert blob_store.list("no-such-container-" + unique) == []
