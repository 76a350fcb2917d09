"""Between libtorrent's "piece finished" and the node's readers: admit each piece.

libtorrent checks a piece against the torrent's Merkle tree before it says the piece is
finished, but the bytes readers get are the ones it stores afterwards (and its write may
not have reached the file yet when the alert comes). So a finished piece is read back
through libtorrent's own disk layer (``read_piece``), checked against the manifest's
SHA-256, recorded in the node cache (the one store every process on the node reads: its
RAM tier keeps a copy, its disk tier a link to libtorrent's file, so the node holds the
model once on disk), and only then reported had. A piece whose stored bytes do not match
is never reported: it is handed back to be fetched again, and the node never claims (or
lets a reader see) bytes the manifest does not name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pagefault.cache import NodeCache
from pagefault.manifest import PieceManifest, piece_matches
from pagefault.swarm.torrent import TorrentLayout

__all__ = ["PieceAdmission"]

_log = logging.getLogger("pagefault.agent")
_ADMITTERS = 2  # reading back and hashing releases the GIL; two keep up with a 10 GbE link


class PieceAdmission:
    """Admit finished pieces of one torrent: ``on_admitted(piece)`` once checked (and
    cached), ``on_corrupt(piece, why)`` when the bytes on disk are not the manifest's."""

    def __init__(
        self,
        layout: TorrentLayout,
        manifest: PieceManifest,
        save_path: Path,
        *,
        cache: NodeCache | None,
        on_admitted: Callable[[int], None],
        on_corrupt: Callable[[int, str], None],
    ) -> None:
        self.layout = layout
        self.manifest = manifest
        self.save_path = save_path  # where libtorrent keeps (and seeds from) the files
        self.cache = cache  # None: the model is not in the node cache (checked, not stored)
        self._on_admitted = on_admitted
        self._on_corrupt = on_corrupt
        self._pool = ThreadPoolExecutor(_ADMITTERS, thread_name_prefix="pagefault-admit")

    def submit(self, piece: int, data: bytes) -> Future[None]:
        """Admit ``data``, the piece as libtorrent read it back (off the alert thread)."""
        return self._pool.submit(self._admit_logged, piece, data)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _admit_logged(self, piece: int, data: bytes) -> None:
        try:
            self.admit(piece, data)
        except Exception as exc:  # a thread of its own: report, never die silently
            _log.exception("piece %d could not be admitted", piece)
            self._on_corrupt(piece, f"{type(exc).__name__}: {exc}")

    def admit(self, piece: int, data: bytes) -> None:
        entry, offset = self.layout.locate(piece)
        if len(data) != min(self.layout.piece_size, entry.size - offset):
            self._on_corrupt(piece, f"{entry.name} piece at {offset} read back {len(data)} bytes")
            return
        want = self.manifest.file(entry.name).pieces[offset // self.layout.piece_size]
        if not piece_matches([data], want):
            self._on_corrupt(piece, f"{entry.name} bytes at {offset} fail their digest")
            return
        if self.cache is not None:  # the disk tier links to the seed file: one copy
            held_at = (entry.path(self.save_path).absolute(), offset)
            self.cache.store(want, [memoryview(data)], held_at=held_at)
        self._on_admitted(piece)
