"""Per-piece digests of a model's files: what bytes from the network are checked against.

A *piece manifest* (``pagefault.manifest.json``, published next to the model) splits
each file into fixed-size pieces and records the digest of each: SHA-256 by default,
BLAKE3 for checkpoints (see :mod:`pagefault.manifest.digest`). Pieces are absolute
file ranges ``[i * piece_size, (i + 1) * piece_size)`` (the last one shorter), header
bytes included, so the cache and the swarm can key on them without knowing tensors.
Parsing is from bytes and strict: a manifest comes from the network too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pagefault.errors import FormatError, NotFound
from pagefault.formats.index import parse_json_bytes, validate_shard_name
from pagefault.manifest.digest import (
    SHA256,
    PieceHash,
    algorithm_of,
    check_algorithm,
    hash_piece,
    is_piece_digest,
    new_piece_hash,
)
from pagefault.manifest.merkle import BlockHasher, block_hashes, piece_root

__all__ = [
    "DEFAULT_PIECE_SIZE",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "FileDigest",
    "PieceHasher",
    "PieceManifest",
    "check_piece_size",
    "digest_piece",
    "piece_count",
]

MANIFEST_NAME = "pagefault.manifest.json"
MANIFEST_FORMAT = "pagefault-manifest/1"
DEFAULT_PIECE_SIZE = 16 * 1024 * 1024
MIN_PIECE_SIZE = 16 * 1024  # libtorrent v2's block size: pieces must be a power of two above it
MAX_PIECE_SIZE = 1024 * 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def piece_count(size: int, piece_size: int) -> int:
    """Pieces needed to cover ``size`` bytes (an empty file has none)."""
    return -(-size // piece_size)


def digest_piece(
    chunks: Sequence[bytes | bytearray | memoryview],
    piece_size: int,
    *,
    pieces: int,
    algorithm: PieceHash = SHA256,
) -> tuple[str, str | None]:
    """What a manifest records for one piece, given in chunks, of a file of ``pieces``
    pieces: its digest and, for SHA-256 manifests, its BitTorrent v2 hash (hex). BLAKE3
    manifests skip the v2 hash: it is a second SHA-256 pass, the cost BLAKE3 avoids."""
    if algorithm != SHA256:
        return hash_piece(chunks, algorithm), None
    v2 = piece_root(block_hashes(chunks), piece_size, whole_file=pieces == 1)
    return hash_piece(chunks), v2.hex()


@dataclass(frozen=True)
class FileDigest:
    """One file of a model: its size, the digest of each piece and, optionally, each piece's
    BitTorrent v2 Merkle hash (``roots``, see :mod:`pagefault.manifest.merkle`) for the swarm."""

    name: str
    size: int
    pieces: tuple[str, ...]
    roots: tuple[str, ...] = ()

    @classmethod
    def from_pieces(
        cls, name: str, size: int, digests: Sequence[tuple[str, str | None]]
    ) -> FileDigest:
        """From the ``(digest, v2 hash)`` of each piece, as :func:`digest_piece` gives them."""
        roots = tuple(r for _, r in digests if r is not None)
        pieces = tuple(d for d, _ in digests)
        return cls(name, size, pieces, roots if len(roots) == len(pieces) else ())

    def same_bytes(self, other: FileDigest) -> bool:
        """Same name, size and piece digests (whether or not either records ``roots``)."""
        return (self.name, self.size, self.pieces) == (other.name, other.size, other.pieces)

    def piece_range(self, index: int, piece_size: int) -> tuple[int, int]:
        """Absolute ``[start, end)`` of piece ``index`` in this file."""
        start = index * piece_size
        return start, min(start + piece_size, self.size)


@dataclass(frozen=True)
class PieceManifest:
    """Every file of a model split into pieces, each with its digest (one algorithm)."""

    piece_size: int
    files: tuple[FileDigest, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def algorithm(self) -> PieceHash:
        """The piece hash its digests use (SHA-256 when it has no pieces at all)."""
        first = next((f.pieces[0] for f in self.files if f.pieces), None)
        return SHA256 if first is None else algorithm_of(first)

    @property
    def manifest_id(self) -> str:
        """SHA-256 of the canonical JSON: same bytes, same id, whatever the URI."""
        return hashlib.sha256(self.to_json()).hexdigest()

    def file(self, name: str) -> FileDigest:
        for entry in self.files:
            if entry.name == name:
                return entry
        raise NotFound(f"piece manifest has no file {name!r}")

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, no whitespace, files in the given order."""
        check_piece_size(self.piece_size, "piece manifest")  # never write what no reader takes
        body = {
            "format": MANIFEST_FORMAT,
            "piece_size": self.piece_size,
            "files": [_file_json(f) for f in self.files],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, *, name: str) -> PieceManifest:
        """Parse and validate manifest bytes; ``name`` (path or URI) appears in errors."""
        raw = parse_json_bytes(data, name=name, limit=MAX_MANIFEST_BYTES)
        if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
            raise FormatError(f"{name}: not a piece manifest (want format {MANIFEST_FORMAT!r})")
        piece_size = check_piece_size(raw.get("piece_size"), name)
        files = raw.get("files")
        if not isinstance(files, list) or not files:
            raise FormatError(f"{name}: 'files' must be a non-empty list")
        digests = tuple(
            _parse_file(entry, piece_size, f"{name}: files[{i}]") for i, entry in enumerate(files)
        )
        names = [d.name for d in digests]
        if len(set(names)) != len(names):
            raise FormatError(f"{name}: a file is listed twice")
        if len({algorithm_of(p) for d in digests for p in d.pieces}) > 1:
            raise FormatError(f"{name}: piece digests mix hash algorithms")
        return cls(piece_size, digests)


class PieceHasher:
    """Hash bytes written sequentially (e.g. a checkpoint shard) into fixed-size pieces,
    with their digests and, for SHA-256, their BitTorrent v2 Merkle hashes."""

    def __init__(self, piece_size: int = DEFAULT_PIECE_SIZE, algorithm: PieceHash = SHA256) -> None:
        self.piece_size = check_piece_size(piece_size, "piece_size")
        self.algorithm = check_algorithm(algorithm)
        self._pieces: list[str] = []
        self._roots: list[str] = []
        self._first_blocks: list[bytes] = []  # a one-piece file's root pads differently
        self._current = new_piece_hash(algorithm)
        self._blocks = _v2_blocks(self.algorithm)
        self._filled = 0
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.size += view.nbytes
        while view.nbytes:
            take = min(view.nbytes, self.piece_size - self._filled)
            self._current.update(view[:take])
            if self._blocks is not None:
                self._blocks.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.piece_size:
                self._end_piece()

    def finish(self, name: str) -> FileDigest:
        """The digest of everything passed to :meth:`update`, as file ``name``."""
        if self._filled:
            self._end_piece()
        roots = self._roots
        if len(self._pieces) == 1 and self._blocks is not None:
            roots = [piece_root(self._first_blocks, self.piece_size, whole_file=True).hex()]
        return FileDigest(name, self.size, tuple(self._pieces), tuple(roots))

    def _end_piece(self) -> None:
        self._pieces.append(self._current.hexdigest())
        if self._blocks is not None:
            blocks = self._blocks.flush()
            self._roots.append(piece_root(blocks, self.piece_size, whole_file=False).hex())
            if len(self._pieces) == 1:
                self._first_blocks = blocks
        self._current, self._blocks, self._filled = (
            new_piece_hash(self.algorithm),
            _v2_blocks(self.algorithm),
            0,
        )


def _v2_blocks(algorithm: PieceHash) -> BlockHasher | None:
    """Block hashes for a piece's v2 root: SHA-256 manifests only (see :func:`digest_piece`)."""
    return BlockHasher() if algorithm == SHA256 else None


def check_piece_size(value: Any, name: str, *, error: type[Exception] = FormatError) -> int:
    """The reader's rule for a piece size, applied by writers too (``error`` for arguments:
    ``ConfigError``), so no manifest is ever written that no reader would accept."""
    valid = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_PIECE_SIZE <= value <= MAX_PIECE_SIZE
        and value & (value - 1) == 0
    )
    if not valid:
        raise error(
            f"{name}: piece_size {value!r} must be a power of two from {MIN_PIECE_SIZE} "
            f"(16 KiB) to {MAX_PIECE_SIZE} (1 GiB), such as 4MiB or 16MiB"
        )
    return int(value)


def _file_json(digest: FileDigest) -> dict[str, Any]:
    body: dict[str, Any] = {"name": digest.name, "size": digest.size, "pieces": list(digest.pieces)}
    if digest.roots:
        body["roots"] = list(digest.roots)
    return body


def _check_hashes(values: Any, want: int, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(values, list) or len(values) != want:
        raise FormatError(f"{where}: '{field}' must list {want} hashes")
    roots = field == "roots"  # BitTorrent v2 hashes: SHA-256 by definition, never prefixed
    for i, digest in enumerate(values):
        if not is_piece_digest(digest) or (roots and algorithm_of(digest) != SHA256):
            form = "64 lowercase hex digits" + ("" if roots else ", optionally after 'blake3:'")
            raise FormatError(f"{where}: {field}[{i}] is not a digest ({form})")
    return tuple(values)


def _parse_file(entry: Any, piece_size: int, where: str) -> FileDigest:
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: must be an object")
    name, size, pieces = entry.get("name"), entry.get("size"), entry.get("pieces")
    if not isinstance(name, str):
        raise FormatError(f"{where}: 'name' must be a string")
    validate_shard_name(name, where=f"{where}.name", suffixes=(".safetensors", ".json"))
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FormatError(f"{where} ({name}): 'size' must be a non-negative integer")
    want = piece_count(size, piece_size)
    if not isinstance(pieces, list) or len(pieces) != want:
        raise FormatError(f"{where} ({name}): {size} bytes need {want} piece hashes")
    where = f"{where} ({name})"
    digests = _check_hashes(pieces, want, where, "pieces")
    roots = entry.get("roots")
    return FileDigest(
        name, size, digests, () if roots is None else _check_hashes(roots, want, where, "roots")
    )
