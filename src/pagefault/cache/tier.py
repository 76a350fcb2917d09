"""One tier of the node cache: a directory of immutable, content-addressed piece files.

A piece lives at ``pieces/<hex[:2]>/<digest>``: the piece's bytes, then a 16-byte trailer
(magic, length, XXH3-64 of the bytes). The name is the digest checked when the piece
was fetched; the trailer lets every later read check the bytes at memory speed, so a
bit flipped at rest is caught without re-hashing SHA-256. Files appear only by rename
of a complete (and, on durable tiers, fsynced) temp file, so a writer killed at any
point leaves at worst a temp file, never an entry that reads as valid.

A piece can instead be linked: a line in a link table (:mod:`pagefault.cache.links`)
says which file already holds it, where, and its XXH3 (the swarm agent's seed files,
which libtorrent must keep). The node then keeps one copy of a swarmed model, not two;
reads check the XXH3 as for any piece, and a link whose file is gone or changed is
dropped like a corrupt piece.
"""

from __future__ import annotations

import errno
import os
import secrets
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import xxhash

from pagefault.cache.links import LinkTables
from pagefault.cache.locks import FileLock
from pagefault.errors import CacheError, SourceError
from pagefault.manifest.digest import hex_part, is_piece_digest
from pagefault.sources.cursor import BufferCursor
from pagefault.sources.local import read_fully
from pagefault.system.files import fsync_directory, temp_owner
from pagefault.system.processes import process_alive

__all__ = ["TRAILER_BYTES", "PieceFile", "PieceTier", "StoredPiece", "checksum"]

_TRAILER = struct.Struct("<4sIQ")
TRAILER_BYTES = _TRAILER.size
_MAGIC = b"PFC1"
_LINE_BYTES = 100  # about what a link's line takes in its table
_RESCAN_SECONDS = 1.0  # other processes write too: re-count usage at least this often


def checksum(chunks: Sequence[bytes | bytearray | memoryview]) -> int:
    """XXH3-64 of the concatenated chunks (about 10 GB/s per core; releases the GIL)."""
    digest = xxhash.xxh3_64()
    for chunk in chunks:
        digest.update(chunk)
    return digest.intdigest()


@dataclass(frozen=True)
class StoredPiece:
    """A piece file as found by a scan: its digest, bytes on disk, and last use."""

    sha: str
    size: int
    used_at: float


class PieceFile:
    """An open piece: read it into buffers or map it, then check it against its trailer."""

    def __init__(self, fd: int, length: int, expected: int, path: Path, *, offset: int = 0) -> None:
        self.fd = fd
        self.length = length
        self.path = path
        self.offset = offset  # where the bytes start in ``fd`` (a link's file: anywhere)
        self._expected = expected

    def read_into(self, buffers: Sequence[memoryview]) -> None:
        """Fill ``buffers`` (exactly ``length`` bytes in all) with the piece."""
        cursor = BufferCursor(buffers)
        if cursor.total != self.length:
            raise CacheError(f"{self.path}: asked for {cursor.total} bytes of {self.length}")
        try:
            read_fully(self.fd, self.offset, buffers, name=str(self.path))
        except SourceError as exc:
            raise CacheError(str(exc)) from exc

    def matches(self, chunks: Sequence[bytes | bytearray | memoryview]) -> bool:
        """Whether ``chunks`` (the piece's bytes as read or mapped) match the trailer."""
        return checksum(chunks) == self._expected

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> PieceFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PieceTier:
    """Piece files under ``root``, at most ``capacity`` bytes, evicted least recently used."""

    def __init__(self, root: Path, capacity: int, *, name: str, durable: bool) -> None:
        self.root = root
        self.capacity = capacity
        self.name = name
        self.durable = durable  # fsync before rename: the disk tier must survive power loss
        self._pieces = root / "pieces"
        self._temp = root / "tmp"
        self._links = LinkTables(root / "links")
        self._used: int | None = None
        self._scanned_at = 0.0

    def path(self, sha: str) -> Path:
        if not is_piece_digest(sha):
            raise CacheError(f"{sha!r} is not a piece digest")
        return self._pieces / hex_part(sha)[:2] / sha

    def open(self, sha: str) -> PieceFile | None:
        """The piece if this tier holds a well-formed copy or a link to a file that still
        exists (the bytes are checked on use)."""
        path = self.path(sha)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return self._open_link(sha)
        try:
            entry = _read_entry(fd)
            if entry is None:
                os.close(fd)
                self.drop(sha)
                return None
            with suppress(OSError):
                os.utime(fd)  # the LRU clock
            return PieceFile(fd, *entry, path)
        except OSError as exc:
            with suppress(OSError):
                os.close(fd)
            raise CacheError(f"{path}: cannot read cached piece: {exc.strerror}") from exc

    def _open_link(self, sha: str) -> PieceFile | None:
        link = self._links.find(sha)
        if link is None:
            return None
        try:
            fd = os.open(link.target, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # the seeding agent's file is gone: so is the link
            self._links.drop(sha)
            return None
        return PieceFile(fd, link.length, link.checksum, link.target, offset=link.offset)

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file() or self._links.find(sha) is not None

    def put(
        self, sha: str, chunks: Sequence[memoryview], protected: Callable[[], set[str]]
    ) -> bool:
        """Store a verified piece; False (and nothing left behind) when it cannot fit."""
        length = sum(len(c) for c in chunks)
        if self.has(sha):
            return True
        if not self.make_room(length + _TRAILER.size, protected):
            return False
        try:
            trailer = _TRAILER.pack(_MAGIC, length, checksum(chunks))
            self._write(sha, [*chunks, memoryview(trailer)], durable=self.durable)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                return False
            raise CacheError(f"{self.name} cache {self.root}: cannot store a piece: {exc}") from exc
        self._used = (self._used or 0) + length + _TRAILER.size
        return True

    def link(self, sha: str, target: Path, offset: int, chunks: Sequence[memoryview]) -> None:
        """Record that ``target`` holds the piece (``chunks``, already verified) at
        ``offset``, instead of storing the bytes again. Not fsynced: a link lost to a
        crash only means the piece is read again from the file's owner."""
        if self.has(sha):
            return
        length = sum(len(c) for c in chunks)
        try:
            self._links.add(sha, target, offset, length, checksum(chunks))
        except OSError as exc:
            raise CacheError(f"{self.name} cache {self.root}: cannot link a piece: {exc}") from exc

    def drop(self, sha: str) -> int:
        """Delete this tier's copy (or link) of a piece; returns the bytes freed."""
        self._links.drop(sha)
        path = self.path(sha)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def held(self, sha: str) -> int:
        """How many of the piece's bytes this tier holds or links to (0 or all of them)."""
        try:
            fd = os.open(self.path(sha), os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            link = self._links.find(sha)
            return 0 if link is None or not link.target.exists() else link.length
        try:
            entry = _read_entry(fd)
        finally:
            os.close(fd)
        return 0 if entry is None else entry[0]

    def scan(self) -> list[StoredPiece]:
        """Every piece file with its size and last use, then every link (as the size of
        its line); files that are not pieces are skipped."""
        found = []
        for path in self._piece_paths():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found.append(StoredPiece(path.name, stat.st_size, stat.st_mtime))
        for sha, changed in self._links.entries():
            found.append(StoredPiece(sha, _LINE_BYTES, changed))
        self._used = sum(p.size for p in found)
        self._scanned_at = time.monotonic()
        return found

    def used(self) -> int:
        if self._used is None or time.monotonic() - self._scanned_at > _RESCAN_SECONDS:
            self.scan()
        assert self._used is not None  # set by scan
        return self._used

    def make_room(self, nbytes: int, protected: Callable[[], set[str]]) -> bool:
        """Evict least recently used, unprotected pieces until ``nbytes`` more fit."""
        if nbytes > self.capacity:
            return False
        if self.used() + nbytes <= self.capacity:
            return True
        with FileLock(self.root / ".evict.lock", keep=True):
            pieces = sorted(self.scan(), key=lambda p: p.used_at)
            excess = sum(p.size for p in pieces) + nbytes - self.capacity
            if excess <= 0:
                return True
            keep = protected()
            for piece in pieces:
                if excess <= 0:
                    break
                if piece.sha not in keep:
                    self.drop(piece.sha)
                    excess -= piece.size
            self.scan()
            return excess <= 0

    def remove_stale_temps(self) -> int:
        """Delete temp files whose writer has died, and link tables whose file is gone;
        returns how many."""
        removed = self._links.remove_orphans()
        for path in self._temp.glob("*.tmp") if self._temp.is_dir() else []:
            if not process_alive(temp_owner(path)):
                with suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed

    def _write(self, sha: str, parts: Sequence[memoryview], *, durable: bool) -> None:
        """``parts`` become the entry's file, by rename of a complete temp file."""
        final = self.path(sha)
        self._temp.mkdir(parents=True, exist_ok=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        temp = self._temp / f"{hex_part(sha)[:16]}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, parts)
            if durable:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            os.rename(temp, final)
            if durable:
                fsync_directory(final.parent)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with suppress(FileNotFoundError):
                temp.unlink()
            raise

    def _piece_paths(self) -> Iterator[Path]:
        if not self._pieces.is_dir():
            return
        for bucket in self._pieces.iterdir():
            if len(bucket.name) == 2 and bucket.is_dir():
                yield from (p for p in bucket.iterdir() if is_piece_digest(p.name))


def _read_entry(fd: int) -> tuple[int, int] | None:
    """A piece file's (length, XXH3-64); None when it is not one (torn, truncated, foreign)."""
    size = os.fstat(fd).st_size
    tail = os.pread(fd, _TRAILER.size, max(0, size - _TRAILER.size))
    if len(tail) == _TRAILER.size:
        magic, length, expected = _TRAILER.unpack(tail)
        if magic == _MAGIC and length + _TRAILER.size == size:
            return length, expected
    return None


def _write_all(fd: int, chunks: Sequence[memoryview]) -> None:
    for chunk in chunks:
        done = 0
        while done < len(chunk):
            done += os.write(fd, chunk[done:])
