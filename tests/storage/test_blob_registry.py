"""The blob registry over real Azurite: versions only on change, and conditional writes that hold under
concurrent registrations (one version per content, 1..N without gaps for N contents)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from threading import Barrier
from typing import TypeVar

import pytest

from shared.blob_layout import REGISTRY
from shared.ports import BlobStore
from shared.registry import BlobRegistry
from shared.registry.hashing import directory_hash
from shared.services.registration import register_flow_if_changed
from tests.fakes.memory import ManualClock

pytestmark = pytest.mark.azurite

THREADS = 8
T = TypeVar("T")


def content_hash(n: int) -> str:
    return f"sha256:{n:064x}"


def all_at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls on their own threads, released together so they really race."""
    barrier = Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def versions_in_storage(blob_store: BlobStore, kind: str, name: str) -> list[str]:
    prefix = f"{kind}/{name}/versions/"
    return sorted((info.name.removeprefix(prefix).removesuffix(".json") for info in blob_store.list(REGISTRY, prefix)),
                  key=int)


def make_flow(root: Path, answer: str) -> Path:
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "flow.dag.yaml").write_text("inputs:\n  question: {type: string}\n")
    (root / "prompts" / "answer.jinja2").write_text(answer)
    (root / "__pycache__").mkdir(exist_ok=True)
    (root / "__pycache__" / "tool.cpython-311.pyc").write_bytes(b"\0\1")
    return root


def test_data_versions_only_on_change(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    registry = BlobRegistry(blob_store, clock)
    name = f"math-{unique}"
    assert registry.latest_data(name) is None

    first, created = registry.register_data(name, source_uri="blob://datasets/m/a.jsonl", content_hash=content_hash(1),
                                            description="math", tags={"use_case": "math"})
    assert (first.version, created, first.previous_version) == ("1", True, None)
    assert first.tags == {"use_case": "math", "content_hash": content_hash(1)}
    assert first.created_at == clock.now()

    clock.advance(minutes=1)
    again, created = registry.register_data(name, source_uri="blob://datasets/m/a.jsonl", content_hash=content_hash(1))
    assert (again, created) == (first, False)

    second, created = registry.register_data(name, source_uri="blob://datasets/m/a.jsonl",
                                             content_hash=content_hash(2))
    assert (second.version, created, second.previous_version) == ("2", True, "1")
    assert registry.latest_data(name) == second
    stored = json.loads(blob_store.read(REGISTRY, f"data/{name}/versions/1.json")[0])
    assert stored["content_hash"] == content_hash(1)
    assert versions_in_storage(blob_store, "data", name) == ["1", "2"]


def test_concurrent_registrations_of_one_content_create_one_version(blob_store: BlobStore, clock: ManualClock,
                                                                    unique: str) -> None:
    registry = BlobRegistry(blob_store, clock)
    name = f"same-{unique}"
    results = all_at_once([
        lambda: registry.register_data(name, source_uri="blob://d/x.jsonl", content_hash=content_hash(7))
    ] * THREADS)
    assert sum(created for _, created in results) == 1
    assert {version.version for version, _ in results} == {"1"}
    assert versions_in_storage(blob_store, "data", name) == ["1"]
    assert registry.latest_data(name).version == "1"


def test_concurrent_registrations_of_different_contents_get_1_to_n(blob_store: BlobStore, clock: ManualClock,
                                                                   unique: str) -> None:
    registry = BlobRegistry(blob_store, clock)
    name = f"many-{unique}"

    def register(n: int) -> Callable[[], tuple]:
        return lambda: registry.register_data(name, source_uri="blob://d/x.jsonl", content_hash=content_hash(n))

    results = all_at_once([register(n) for n in range(THREADS)])
    assert all(created for _, created in results)
    assert sorted((v.version for v, _ in results), key=int) == [str(n) for n in range(1, THREADS + 1)]
    assert len({v.content_hash for v, _ in results}) == THREADS
    assert versions_in_storage(blob_store, "data", name) == [str(n) for n in range(1, THREADS + 1)]
    latest = registry.latest_data(name)
    assert latest.version == str(THREADS)
    # Lineage forms one chain: every version points at the one before it.
    by_version = {v.version: v for v, _ in results}
    assert [by_version[str(n)].previous_version for n in range(1, THREADS + 1)] == [None, *map(str, range(1, THREADS))]


def test_a_version_orphaned_by_a_crash_is_adopted(blob_store: BlobStore, clock: ManualClock, unique: str) -> None:
    registry = BlobRegistry(blob_store, clock)
    name = f"orphan-{unique}"
    registry.register_data(name, source_uri="blob://d/x", content_hash=content_hash(1))
    # A writer claimed version 2 and died before moving the pointer.
    orphan = registry.latest_data(name).model_copy(update={"version": "2", "content_hash": content_hash(2),
                                                           "previous_version": "1"})
    blob_store.write(REGISTRY, f"data/{name}/versions/2.json", orphan.model_dump_json().encode(), if_absent=True)

    retried, created = registry.register_data(name, source_uri="blob://d/x", content_hash=content_hash(2))
    assert (retried.version, created) == ("2", False)
    assert registry.latest_data(name).version == "2"
    other, created = registry.register_data(name, source_uri="blob://d/x", content_hash=content_hash(3))
    assert (other.version, created) == ("3", True)


def test_flow_files_are_copied_and_versions_follow_content(blob_store: BlobStore, clock: ManualClock, unique: str,
                                                           tmp_path: Path) -> None:
    registry = BlobRegistry(blob_store, clock)
    name = f"flow-{unique}"
    flow = make_flow(tmp_path / "flow", "Answer: {{question}}\n")

    first, created = register_flow_if_changed(registry, name=name, flow_dir=flow,
                                              properties={"metric.accuracy": "0.9", "git_commit": "abc"})
    assert (first.version, created) == ("1", True)
    assert first.content_hash == directory_hash(flow)
    assert first.artifact_uri == f"blob://registry/flows/{name}/1/files/"
    prefix = f"flows/{name}/1/files/"
    assert sorted(info.name.removeprefix(prefix) for info in blob_store.list(REGISTRY, prefix)) == [
        "flow.dag.yaml", "prompts/answer.jinja2"]  # __pycache__ is not part of the flow
    assert blob_store.read(REGISTRY, prefix + "prompts/answer.jinja2")[0] == b"Answer: {{question}}\n"

    assert register_flow_if_changed(registry, name=name, flow_dir=flow, properties={}) == (first, False)

    (flow / "prompts" / "answer.jinja2").write_text("Answer briefly: {{question}}\n")
    second, created = register_flow_if_changed(registry, name=name, flow_dir=flow, properties={"variant": "v2"})
    assert (second.version, second.previous_version, created) == ("2", "1", True)
    assert registry.latest_flow(name) == second
    assert blob_store.read(REGISTRY, f"flows/{name}/2/files/prompts/answer.jinja2")[0] == (
        b"Answer briefly: {{question}}\n")


def test_concurrent_flow_registrations_create_one_complete_version(blob_store: BlobStore, clock: ManualClock,
                                                                   unique: str, tmp_path: Path) -> None:
    registry = BlobRegistry(blob_store, clock)
    name = f"flowrace-{unique}"
    copies = [make_flow(tmp_path / f"checkout{n}", "same\n") for n in range(THREADS)]  # one content, many machines
    results = all_at_once([
        (lambda flow=flow: register_flow_if_changed(registry, name=name, flow_dir=flow, properties={}))
        for flow in copies
    ])
    assert sum(created for _, created in results) == 1
    assert {v.version for v, _ in results} == {"1"}
    assert versions_in_storage(blob_store, "flows", name) == ["1"]
    assert len(blob_store.list(REGISTRY, f"flows/{name}/1/files/")) == 2


def test_missing_files_of_a_version_are_restored_by_the_next_registration(blob_store: BlobStore, clock: ManualClock,
                                                                          unique: str, tmp_path: Path) -> None:
    registry = BlobRegistry(blob_store, clock)
    name = f"heal-{unique}"
    flow = make_flow(tmp_path / "flow", "x\n")
    register_flow_if_changed(registry, name=name, flow_dir=flow, properties={})
    blob_store.delete(REGISTRY, f"flows/{name}/1/files/flow.dag.yaml")  # as if the first writer died mid-copy

    assert register_flow_if_changed(registry, name=name, flow_dir=flow, properties={})[1] is False
    assert blob_store.read(REGISTRY, f"flows/{name}/1/files/flow.dag.yaml")[0].startswith(b"inputs:")


def test_a_hash_that_does_not_describe_the_folder_is_refused(blob_store: BlobStore, clock: ManualClock, unique: str,
                                                             tmp_path: Path) -> None:
    registry = BlobRegistry(blob_store, clock)
    with pytest.raises(ValueError, match="does not match"):
        registry.register_flow(f"bad-{unique}", flow_dir=make_flow(tmp_path / "f", "x"), content_hash=content_hash(1),
                               properties={})
    assert registry.latest_flow(f"bad-{unique}") is None


def test_a_flow_version_can_be_read_by_number(blob_store, clock, unique, tmp_path) -> None:
    from shared.registry.blob_registry import BlobRegistry
    from shared.registry.hashing import directory_hash

    registry = BlobRegistry(blob_store, clock)
    (tmp_path / "flow.dag.yaml").write_text("nodes: []\n")
    name = f"flow-{unique}"
    version, _ = registry.register_flow(name, flow_dir=tmp_path, content_hash=directory_hash(tmp_path),
                                        properties={"metric.accuracy": "0.9"})
    found = registry.flow(name, version.version)
    assert found is not None
    assert found.properties["metric.accuracy"] == "0.9"
    assert registry.flow(name, "99") is None
