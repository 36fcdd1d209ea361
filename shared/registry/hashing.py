"""Content hashes that decide whether something changed: a dataset's lines (hashed as they are read) and a directory
(a flow).

`directory_hash` is the same on every machine for the same files: a sorted walk of relative POSIX paths, each file
contributing its path and its content, both length-prefixed so no two different trees can produce the same byte
stream (moving bytes from one file to the next, or renaming, changes the hash).

Line endings are hashed as they are, not normalised: the hash stands for the bytes that get registered and
deployed, and a CRLF checkout deploys CRLF files. Keep checkouts byte-identical across machines instead
(`.gitattributes`: `* text=auto eol=lf`), so a Windows agent and a Linux agent agree.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

# Build and run droppings that do not change what a flow does; matched against every path component's name.
DEFAULT_IGNORE: tuple[str, ...] = ("__pycache__", "*.pyc", ".promptflow", ".runs", ".git", ".DS_Store")

_FORMAT = b"genaiops-dirhash-v1\0"  # a new layout gets a new tag, so old and new hashes never collide
_CHUNK = 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024  # a JSONL row longer than this is refused rather than held in memory


def hashed_lines(chunks: Iterable[bytes], digest: hashlib._Hash,
                 max_line: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number from 1, line without its newline) for a chunk stream, feeding every byte to `digest` on the
    way: one pass. A line longer than `max_line` comes out as None — hashed, never held — so memory stays at one
    chunk plus one line whatever the stream's size or shape (a 1 GB file without a newline included)."""
    number, pending, overflow = 0, b"", False
    for chunk in chunks:
        digest.update(chunk)
        *complete, tail = chunk.split(b"\n")
        for piece in complete:
            number += 1
            yield number, None if overflow or len(pending) + len(piece) > max_line else pending + piece
            pending, overflow = b"", False
        if overflow or len(pending) + len(tail) > max_line:
            pending, overflow = b"", True
        else:
            pending += tail
    if pending or overflow:
        yield number + 1, None if overflow else pending


def is_ignored(relative: str, ignore: Collection[str] = DEFAULT_IGNORE) -> bool:
    return any(fnmatch.fnmatchcase(part, pattern) for part in relative.split("/") for pattern in ignore)


def list_files(root: Path, ignore: Collection[str] = DEFAULT_IGNORE) -> list[tuple[str, Path]]:
    """(relative POSIX path, absolute path) of every file under `root` that is not ignored, sorted by the relative
    path. Symlinked directories are not followed (a link out of the flow folder is not part of the flow)."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(str(root))
    found: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatchcase(d, p) for p in ignore)]
        for name in names:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not is_ignored(relative, ignore):
                found.append((relative, path))
    # Sort on the POSIX string, not on os.walk's order, which depends on the file system and creation order.
    return sorted(found, key=lambda item: item[0])


def directory_hash(path: Path, ignore: Collection[str] = DEFAULT_IGNORE) -> str:
    """"sha256:<hex>" over every non-ignored file's relative path and content. Empty folders do not count."""
    digest = hashlib.sha256(_FORMAT)
    for relative, file in list_files(path, ignore):
        encoded = relative.encode("utf-8")
        size = file.stat().st_size
        digest.update(len(encoded).to_bytes(8, "big") + encoded + size.to_bytes(8, "big"))
        read = 0
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                read += len(chunk)
        if read != size:  # the length prefix must describe the bytes that were hashed
            raise RuntimeError(f"{relative} changed while it was being hashed")
    return f"sha256:{digest.hexdigest()}"
