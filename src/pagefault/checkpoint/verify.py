"""Check a checkpoint directory against its piece manifest, piece by piece, in parallel.

The manifest written by ``save`` lists every shard and the index with the SHA-256 of
each piece; re-hashing them proves the bytes on disk are the bytes that were saved
(a torn copy, a bad disk, a partial download).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pagefault.errors import IntegrityError, NotFound
from pagefault.manifest import MANIFEST_NAME, FileDigest, PieceManifest, hash_piece
from pagefault.pipeline.memory import cpu_count

__all__ = ["VerifyReport", "verify_checkpoint"]


@dataclass(frozen=True)
class VerifyReport:
    """What was checked: the manifest's files, their bytes and pieces."""

    manifest: PieceManifest
    files: int
    bytes: int
    pieces: int


def verify_checkpoint(path: str | os.PathLike[str], *, threads: int | None = None) -> VerifyReport:
    """Re-hash every piece the manifest lists; raise ``IntegrityError`` on the first mismatch."""
    directory = Path(path)
    directory = directory if directory.is_dir() else directory.parent
    manifest = _read_manifest(directory / MANIFEST_NAME)
    for entry in manifest.files:
        _check_size(directory / entry.name, entry)
    jobs = [
        (directory / entry.name, entry, index)
        for entry in manifest.files
        for index in range(len(entry.pieces))
    ]
    workers = threads or max(2, cpu_count())
    with ThreadPoolExecutor(workers, thread_name_prefix="pagefault-verify") as pool:
        for future in [pool.submit(_check_piece, p, e, i, manifest.piece_size) for p, e, i in jobs]:
            future.result()
    return VerifyReport(manifest, len(manifest.files), manifest.total_bytes, len(jobs))


def _read_manifest(path: Path) -> PieceManifest:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(f"{path}: no piece manifest (saved with hash_pieces=False?)") from exc
    except OSError as exc:
        raise NotFound(f"{path}: cannot read: {exc.strerror}") from exc
    return PieceManifest.from_json(data, name=str(path))


def _check_size(path: Path, entry: FileDigest) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise NotFound(f"{path}: listed in the piece manifest but missing") from exc
    if size != entry.size:
        raise IntegrityError(f"{path}: {size} bytes, the piece manifest says {entry.size}")


def _check_piece(path: Path, entry: FileDigest, index: int, piece_size: int) -> None:
    start, end = entry.piece_range(index, piece_size)
    buffer = bytearray(end - start)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = os.preadv(fd, [buffer], start)
    finally:
        os.close(fd)
    digest = hash_piece([memoryview(buffer)[:got]])
    if got != end - start or digest != entry.pieces[index]:
        raise IntegrityError(
            f"{path}: piece {index} (bytes [{start}, {end})) has SHA-256 {digest[:16]}…, "
            f"the piece manifest says {entry.pieces[index][:16]}…"
        )
