"""Put origin bytes into the swarm: read pieces in consumption order, verify, ``add_piece``.

Used by the root of each stripe's tree (its designated fetcher: the origin serves each
piece once) and by any node whose swarm stalled or whose coordinator is gone (never
slower than direct). Every piece is checked against the manifest's SHA-256 before
libtorrent sees it, and libtorrent checks it again against the torrent's Merkle tree.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import libtorrent as lt

from pagefault.errors import IntegrityError
from pagefault.manifest import PieceManifest, piece_matches
from pagefault.pieces.engine import map_pieces
from pagefault.sources import Source
from pagefault.swarm.striped import StripedTorrent

__all__ = ["OriginFeeder"]

_log = logging.getLogger("pagefault.agent")
_CHECK_POLL_S = 0.02  # how often a feeder asks whether libtorrent still checks the files


class OriginFeeder:
    """Fetch the pieces a torrent still lacks from ``open_source(name)``, ``threads`` at once."""

    def __init__(
        self,
        torrent: StripedTorrent,
        manifest: PieceManifest,
        open_source: Callable[[str], Source],
        *,
        threads: int,
        stop: threading.Event,
    ) -> None:
        self.torrent = torrent
        self.layout = torrent.layout
        self.manifest = manifest
        self.open_source = open_source
        self.threads = threads
        self._stop = stop  # the job's: set when the agent shuts down
        self.bytes = 0
        self._lock = threading.Lock()
        self._running = False
        self._reason: str | None = None  # the last pass's
        self._sources: dict[str, Source] = {}

    @property
    def running(self) -> bool:
        return self._running

    def start(self, reason: str, *, wanted: Callable[[int], bool] = lambda piece: True) -> bool:
        """Feed the missing pieces that ``wanted(piece)`` selects, asked just before each
        read (a stripe the coordinator took back is dropped mid-pass), in a background
        thread; False if a pass is already running."""
        with self._lock:
            if self._running:
                return False
            self._running = True
            repeated, self._reason = reason == self._reason, reason
        # A tree's root starts a pass every heartbeat until the whole model is on the node
        # (a pass ends when nothing more is its to read): say each reason once, not twice a
        # second.
        _log.log(
            logging.DEBUG if repeated else logging.INFO, "fetching from the origin: %s", reason
        )
        threading.Thread(target=self._feed, args=(wanted,), daemon=True).start()
        return True

    def _feed(self, wanted: Callable[[int], bool]) -> None:
        def feed_one(piece: int) -> None:
            if not self._stop.is_set() and wanted(piece):
                self._feed_one(piece)

        try:
            # An agent restarted over its files: until libtorrent has checked them, every
            # piece looks missing, and a feeder starting at once fetched 60% of a model
            # it held from the origin again.
            while self.torrent.checking():
                time.sleep(_CHECK_POLL_S)
            map_pieces(feed_one, self.layout.fetch_order(), threads=self.threads, name="feed")
        except Exception:
            if self._stop.is_set():  # a pass cut short by shutdown (its pool refuses work)
                return
            _log.exception("origin fetch failed; will retry on the next stall")
        finally:
            with self._lock:
                self._running = False

    def replace(self, piece: int) -> None:
        """Fetch one piece again from the origin over a bad copy on disk (in the background)."""
        threading.Thread(target=self._replace_logged, args=(piece,), daemon=True).start()

    def _replace_logged(self, piece: int) -> None:
        try:
            self._feed_one(piece, overwrite=True)
        except Exception:
            _log.exception("piece %d: fetching it again from the origin failed", piece)

    def _feed_one(self, piece: int, *, overwrite: bool = False) -> None:
        if self.torrent.have_piece(piece) and not overwrite:
            return
        entry, offset = self.layout.locate(piece)
        size = min(self.layout.piece_size, entry.size - offset)
        data = bytearray(size)
        self._source(entry.name).read_into(offset, [memoryview(data)])
        want = self.manifest.file(entry.name).pieces[offset // self.layout.piece_size]
        if not piece_matches([data], want):
            raise IntegrityError(
                f"{entry.name}: piece at {offset} from the origin fails its digest"
            )
        if self.torrent.have_piece(piece) and not overwrite:  # a peer was faster: keep its copy
            return
        flags = lt.add_piece_flags_t.overwrite_existing if overwrite else 0
        self.torrent.add_piece(piece, bytes(data), flags)
        with self._lock:
            self.bytes += size

    def _source(self, name: str) -> Source:
        with self._lock:
            if name not in self._sources:
                self._sources[name] = self.open_source(name)
            return self._sources[name]

    def close(self) -> None:
        for source in self._sources.values():
            source.close()
