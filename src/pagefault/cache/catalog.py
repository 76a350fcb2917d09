"""What the cache knows beyond piece bytes: which URI is which files, which pieces, pins.

Under the cache directory (persistent):

* ``uris/<key>.json`` – a :class:`UriRecord`: the files a URI resolved to, with the
  ETag/version/size that identify each, and the index text when the model is sharded.
* ``files/<file key>/digests`` – the digest of every piece of an origin file, one per
  line, from a manifest (published, or the swarm's): one file per model file, not one
  per piece (a file per piece cost the swarm agent an inode per piece).
* ``files/<file key>/<piece index>`` – one piece's digest, learned while fetching when no
  manifest is published; newer than the table, so it wins where both exist.
* ``pins/<key>`` – URIs that eviction must never touch.

Every write is a temp file renamed into place; readers ignore anything malformed.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pagefault.manifest.digest import is_piece_digest
from pagefault.system.files import temp_owner, write_atomic
from pagefault.system.processes import process_alive

__all__ = ["Catalog", "FileRecord", "UriRecord", "file_key", "uri_key"]

_FORMAT = "pagefault-cache-uri/1"
_TABLE = "digests"
_TABLE_FORMAT = "pagefault-piece-digests/1"


def uri_key(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:40]


def file_key(location: str, size: int, etag: str | None, version: str | None) -> str:
    """The identity of one version of one origin file (a new ETag is a new file)."""
    identity = "\0".join([location, str(size), etag or "", version or ""])
    return hashlib.sha256(identity.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class FileRecord:
    name: str
    size: int
    key: str
    etag: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class UriRecord:
    """What a URI resolved to when it was last loaded through the cache."""

    uri: str
    entry: str  # the file name the URI resolved to (an index or a shard)
    piece_size: int
    files: tuple[FileRecord, ...]
    verified: bool  # pieces come from a published manifest (else learned while fetching)
    index_text: str | None = None
    updated: float = field(default_factory=time.time)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        data = asdict(self) | {"format": _FORMAT}
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UriRecord | None:
        """The record, or None for anything malformed (a record is only a hint)."""
        try:
            raw: dict[str, Any] = json.loads(data)
            if raw.pop("format") != _FORMAT:
                return None
            files = tuple(FileRecord(**f) for f in raw.pop("files"))
            return cls(files=files, **raw)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


class Catalog:
    """The records under one cache directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # file key -> ((inode, mtime, size) of its digest table, the table as parsed)
        self._tables: dict[str, tuple[tuple[int, int, int], list[str | None]]] = {}

    def record(self, uri: str) -> UriRecord | None:
        try:
            data = (self.root / "uris" / f"{uri_key(uri)}.json").read_bytes()
        except OSError:  # absent, or a cache directory that cannot be read: no record
            return None
        record = UriRecord.from_json(data)
        return record if record is not None and record.uri == uri else None

    def records(self) -> list[UriRecord]:
        found = [_read(p) for p in sorted((self.root / "uris").glob("[!.]*.json"))]
        return [r for r in map(UriRecord.from_json, found) if r is not None]

    def save(self, record: UriRecord) -> None:
        _write_hint(self.root / "uris" / f"{uri_key(record.uri)}.json", record.to_json())

    def forget(self, uri: str) -> None:
        with suppress(FileNotFoundError):
            (self.root / "uris" / f"{uri_key(uri)}.json").unlink()
        self.unpin(uri)

    def pieces(self, key: str, count: int) -> list[str | None]:
        """The known digest of each of a file's ``count`` pieces (None where unknown)."""
        known = self._on_record(key)
        return [known.get(i) for i in range(count)]

    def piece(self, key: str, index: int) -> str | None:
        """One piece's digest, if on record (another process may just have learned it)."""
        try:
            sha = (self.root / "files" / key / str(index)).read_text().strip()
        except OSError:  # not learned one by one (or an unreadable cache directory)
            table = self._table(key)
            return table[index] if index < len(table) else None
        return sha if is_piece_digest(sha) else None

    def known(self, key: str) -> set[str]:
        """Every piece digest on record for a file."""
        return set(self._on_record(key).values())

    def _on_record(self, key: str) -> dict[int, str]:
        """Piece index -> digest, for every well-formed digest on record for a file."""
        folder = self.root / "files" / key
        indexes = (
            [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
        )
        found = {i: sha for i, sha in enumerate(self._table(key)) if sha is not None}
        for index in indexes:
            sha = self.piece(key, index)
            if sha is not None:
                found[index] = sha
        return found

    def _table(self, key: str) -> list[str | None]:
        """A file's digest table (None for a malformed line), read again only when it
        changes: a load asks for one piece at a time."""
        path = self.root / "files" / key / _TABLE
        try:
            stat = path.stat()
        except OSError:
            return []
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._tables.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        lines = _read(path).decode(errors="replace").splitlines()
        table = [s if is_piece_digest(s) else None for s in lines[1:]]
        if not lines or lines[0] != _TABLE_FORMAT:
            table = []  # not ours, or torn: a hint only
        self._tables[key] = (stamp, table)
        return table

    def learn(self, key: str, index: int, sha: str) -> None:
        """Record a piece's digest; best effort (a record is a hint, the piece is the truth)."""
        with suppress(OSError):
            _write_hint(self.root / "files" / key / str(index), sha.encode())

    def learn_all(self, key: str, shas: tuple[str, ...]) -> None:
        """Record a file's piece digests from a manifest (the whole table, in one file),
        unless they are all on record already."""
        if self.pieces(key, len(shas)) == list(shas):
            return
        folder = self.root / "files" / key
        with suppress(OSError):
            _write_hint(folder / _TABLE, "\n".join([_TABLE_FORMAT, *shas, ""]).encode())
            for path in folder.iterdir():  # superseded by the table
                if path.name.isdigit():
                    path.unlink(missing_ok=True)

    def file_keys(self) -> set[str]:
        folder = self.root / "files"
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def drop_file(self, key: str) -> None:
        folder = self.root / "files" / key
        for path in folder.iterdir() if folder.is_dir() else []:
            path.unlink(missing_ok=True)
        with suppress(OSError):
            folder.rmdir()

    def remove_stale_temps(self) -> int:
        """Delete temp files of writers that died before renaming them; returns how many."""
        stale = [p for p in self.root.glob("*/**/.*.tmp") if not process_alive(temp_owner(p))]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def pin(self, uri: str) -> None:
        _write_hint(self.root / "pins" / uri_key(uri), uri.encode())

    def unpin(self, uri: str) -> None:
        with suppress(FileNotFoundError):
            (self.root / "pins" / uri_key(uri)).unlink()

    def pinned(self) -> set[str]:
        pins = [_read(p) for p in (self.root / "pins").glob("[!.]*")]
        return {pin.decode() for pin in pins if pin}


def _write_hint(path: Path, data: bytes) -> None:
    """Catalog entries are hints (a lost one costs a trip to the origin): atomic, not fsynced,
    readable by every process on the node."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, [data], durable=False, mode=0o644)


def _read(path: Path) -> bytes:
    """A catalog file's bytes; b"" when another process removed it meanwhile."""
    try:
        return path.read_bytes()
    except OSError:
        return b""
