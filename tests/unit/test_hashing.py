"""Content hashes decide registration: equal for equal content on any machine, different for any change."""

from __future__ import annotations

import hashlib
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.registry.hashing import directory_hash, hashed_lines, list_files

FILES = {"flow.dag.yaml": b"inputs: {}\n", "prompts/answer.jinja2": b"Answer: {{q}}\n", "tool.py": b"x = 1\n"}


def make_tree(root: Path, files: dict[str, bytes], order: list[str] | None = None) -> Path:
    for name in order or list(files):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[name])
    return root


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_hashed_lines_split_and_hash_like_the_whole_content_at_any_chunk_size(size: int) -> None:
    content = b'{"a": 1}\n\n{"b": 2}\r\nlast without newline'
    digest = hashlib.sha256()
    lines = list(hashed_lines((content[i:i + size] for i in range(0, len(content), size)), digest))
    assert lines == [(1, b'{"a": 1}'), (2, b""), (3, b'{"b": 2}\r'), (4, b"last without newline")]
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest()


def test_hashed_lines_drop_an_overlong_line_but_keep_counting_and_hashing() -> None:
    content = b"short\n" + b"x" * 25 + b"\nafter\n" + b"y" * 30
    digest = hashlib.sha256()
    lines = list(hashed_lines((content[i:i + 4] for i in range(0, len(content), 4)), digest, max_line=10))
    assert lines == [(1, b"short"), (2, None), (3, b"after"), (4, None)]
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest()


def test_hashed_lines_memory_stays_flat_on_a_file_without_newlines() -> None:
    def forty_megabytes() -> Iterator[bytes]:
        chunk = b"z" * (1024 * 1024)
        for _ in range(40):
            yield chunk

    tracemalloc.start()
    try:
        lines = list(hashed_lines(forty_megabytes(), hashlib.sha256()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [(1, None)]
    assert peak < 4 * 1024 * 1024  # a chunk and at most one line, not the 40 MB

def test_same_files_created_in_a_different_order_hash_the_same(tmp_path: Path) -> None:
    first = make_tree(tmp_path / "a", FILES)
    second = make_tree(tmp_path / "b", FILES, order=list(reversed(FILES)))
    assert directory_hash(first) == directory_hash(second)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", directory_hash(first))


def test_renaming_a_file_changes_the_hash(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "flow", FILES)
    before = directory_hash(tree)
    (tree / "tool.py").rename(tree / "tools.py")
    assert directory_hash(tree) != before


def test_one_byte_changes_the_hash(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "flow", FILES)
    before = directory_hash(tree)
    (tree / "prompts/answer.jinja2").write_bytes(b"Answer: {{q}}!\n")
    assert directory_hash(tree) != before


def test_moving_bytes_between_files_changes_the_hash(tmp_path: Path) -> None:
    # Same concatenated bytes, split differently: only the length prefixes tell them apart.
    one = make_tree(tmp_path / "one", {"a": b"xy", "b": b"z"})
    two = make_tree(tmp_path / "two", {"a": b"x", "b": b"yz"})
    assert directory_hash(one) != directory_hash(two)


def test_line_endings_are_not_normalised(tmp_path: Path) -> None:
    lf = make_tree(tmp_path / "lf", {"flow.dag.yaml": b"a: 1\n"})
    crlf = make_tree(tmp_path / "crlf", {"flow.dag.yaml": b"a: 1\r\n"})
    assert directory_hash(lf) != directory_hash(crlf)


def test_ignored_files_do_not_count(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "flow", FILES)
    before = directory_hash(tree)
    make_tree(tree, {
        "__pycache__/tool.cpython-311.pyc": b"\0", "stray.pyc": b"\0", ".promptflow/flow.tools.json": b"{}",
        ".runs/run1/log.txt": b"log", ".git/HEAD": b"ref", ".DS_Store": b"\0", "prompts/.DS_Store": b"\0",
    })
    (tree / "empty-folder").mkdir()
    assert directory_hash(tree) == before
    assert [relative for relative, _ in list_files(tree)] == ["flow.dag.yaml", "prompts/answer.jinja2", "tool.py"]


def test_custom_ignore_patterns(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "flow", {**FILES, "notes.md": b"draft"})
    assert directory_hash(tree, ignore=("*.md",)) == directory_hash(make_tree(tmp_path / "bare", FILES), ignore=())


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        directory_hash(tmp_path / "nope")
