"""Link tables: the disk tier's pieces that live in another file (the swarm agent's seed files).

One append-only table per linked file, ``links/<key>.links``. Its first line is the file's
absolute path; each later line is a link, ``<digest> <length> <XXH3-64 hex> <offset>``,
or ``-<digest>`` when that link was dropped. Linking a piece appends one line, where a
file per piece cost an inode per piece (on the development VM's journal-less ext4, whose
allocator walks recently freed inodes, ~1 ms apiece under a 16-agent fleet). Readers
parse whole lines only (a torn last line waits for its end) and re-read a table from
where they stopped when it grows. A link is a hint: every read checks the piece's
XXH3, and a link whose file is gone is dropped.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from pagefault.errors import CacheError
from pagefault.manifest.digest import is_piece_digest

__all__ = ["Link", "LinkTables"]

_SUFFIX = ".links"
_MAX_PATH = 4096


@dataclass(frozen=True)
class Link:
    """Where a piece's bytes are: ``length`` bytes at ``offset`` of ``target``."""

    target: Path
    offset: int
    length: int
    checksum: int  # XXH3-64 of the bytes
    table: Path  # the table that records it


@dataclass
class _Parsed:
    """How far a reader has parsed one table."""

    inode: int
    position: int = 0
    target: Path | None = None


class LinkTables:
    """Every link table under ``folder``, parsed into one digest -> link map."""

    def __init__(self, folder: Path, *, refresh_s: float = 0.05) -> None:
        self.folder = folder
        # A miss reads the tables again at most this often: it costs a stat per table,
        # and a cold load of a model no one linked misses on every piece.
        self._refresh_s = refresh_s
        self._refreshed_at = -float("inf")
        self._lock = threading.Lock()
        self._links: dict[str, Link] = {}
        self._parsed: dict[str, _Parsed] = {}  # table file name -> progress

    def add(self, sha: str, target: Path, offset: int, length: int, checksum: int) -> None:
        """Record that ``target`` holds the piece ``sha`` at ``offset``."""
        name = os.fsencode(target)
        if not target.is_absolute() or b"\n" in name or len(name) > _MAX_PATH:
            raise CacheError(f"{target}: a piece link needs an absolute path without newlines")
        table = self.folder / f"{hashlib.sha256(name).hexdigest()[:40]}{_SUFFIX}"
        line = f"{sha} {length} {checksum:x} {offset}\n".encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            _append(table, line, header=name + b"\n")
            self._links[sha] = Link(target, offset, length, checksum, table)

    def find(self, sha: str) -> Link | None:
        """The link of ``sha``. One dropped by another process may still be returned: a
        read checks the bytes, and drops it again if they or the file are gone."""
        with self._lock:
            return self._lookup(sha)

    def drop(self, sha: str) -> bool:
        """Forget the link of ``sha`` (a tombstone line for other readers); False if none."""
        with self._lock:
            link = self._lookup(sha)
            if link is None:
                return False
            del self._links[sha]
            with suppress(FileNotFoundError):  # the table is gone: so is the link
                _append(link.table, f"-{sha}\n".encode())
            return True

    def entries(self) -> list[tuple[str, float]]:
        """Every linked digest with its table's last change (the LRU clock of a link)."""
        with self._lock:
            self._refresh()
            changed: dict[Path, float] = {}
            for table in {link.table for link in self._links.values()}:
                try:
                    changed[table] = table.stat().st_mtime
                except FileNotFoundError:
                    changed[table] = 0.0
            return [(sha, changed[link.table]) for sha, link in self._links.items()]

    def remove_orphans(self) -> int:
        """Delete the tables whose file is gone or that hold no live link; returns how many."""
        with self._lock:
            self._refresh()
            live = {link.table for link in self._links.values() if link.target.exists()}
            removed = 0
            for name in list(self._parsed):
                table = self.folder / name
                if table not in live:
                    table.unlink(missing_ok=True)
                    removed += 1
            self._refresh()
            return removed

    def _lookup(self, sha: str) -> Link | None:
        link = self._links.get(sha)
        if link is None and time.monotonic() - self._refreshed_at >= self._refresh_s:
            self._refresh()
            link = self._links.get(sha)
        return link

    def _refresh(self) -> None:
        """Parse what every table gained since the last look; forget removed tables."""
        self._refreshed_at = time.monotonic()
        try:
            names = {n for n in os.listdir(self.folder) if n.endswith(_SUFFIX)}
        except (FileNotFoundError, NotADirectoryError):
            names = set()
        for name in set(self._parsed) - names:
            self._forget(name)
        for name in names:
            try:
                self._parse(name)
            except OSError:  # removed or unreadable meanwhile: a hint lost, nothing more
                self._forget(name)

    def _parse(self, name: str) -> None:
        table = self.folder / name
        stat = os.stat(table)
        parsed = self._parsed.get(name)
        if parsed is None or parsed.inode != stat.st_ino or stat.st_size < parsed.position:
            self._forget(name)  # new, or replaced: parse it from its start
            parsed = self._parsed[name] = _Parsed(stat.st_ino)
        if stat.st_size == parsed.position:
            return
        with open(table, "rb") as file:
            file.seek(parsed.position)
            data = file.read(stat.st_size - parsed.position)
        whole = data[: data.rfind(b"\n") + 1]
        parsed.position += len(whole)
        for raw in whole.splitlines():
            if parsed.target is None:
                parsed.target = Path(os.fsdecode(raw))
            elif raw.startswith(b"-"):
                self._links.pop(raw[1:].decode(errors="replace"), None)
            elif parsed.target.is_absolute():
                self._take(raw, parsed.target, table)

    def _take(self, raw: bytes, target: Path, table: Path) -> None:
        fields = raw.decode(errors="replace").split(" ")
        if len(fields) != 4 or not is_piece_digest(fields[0]):
            return  # not a link line: skipped, as a hint would be
        try:
            length, checksum, offset = int(fields[1]), int(fields[2], 16), int(fields[3])
        except ValueError:
            return
        self._links[fields[0]] = Link(target, offset, length, checksum, table)

    def _forget(self, name: str) -> None:
        table = self.folder / name
        self._parsed.pop(name, None)
        self._links = {sha: link for sha, link in self._links.items() if link.table != table}


def _append(table: Path, line: bytes, *, header: bytes | None = None) -> None:
    """Append ``line`` to ``table`` in one write (whole, or torn at the end). ``header``:
    create the table if need be, starting with it; without one the table must exist."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if header else 0)
    fd = os.open(table, flags, 0o644)
    try:
        first = header if header and os.fstat(fd).st_size == 0 else b""
        os.write(fd, first + line)
    finally:
        os.close(fd)
