"""One origin file read through the node cache: a :class:`Source` that is also mappable.

Every piece a read needs comes from the fastest tier that holds it (checked against its
trailer checksum), or else from the origin under a cross-process lock, so processes
loading the same model together fetch each piece once. A fetched piece is checked
against its published SHA-256 (or named by the SHA-256 it turns out to have, when the
origin publishes no manifest) before it is handed to the reader and teed into the cache.

Mapped loads map RAM-tier pieces copy-on-write straight into the tensors' address
range: no copy at all, and every process on the node shares the same pages.
"""

from __future__ import annotations

import logging
import mmap
import threading
from collections.abc import Callable, Sequence
from functools import partial

from pagefault.cache.catalog import FileRecord
from pagefault.cache.node import CacheHit, NodeCache
from pagefault.errors import SourceError
from pagefault.manifest import SHA256, hash_piece, piece_count, piece_matches
from pagefault.sources.base import Buffer
from pagefault.sources.chain import ChainSource, SourceCounters
from pagefault.sources.cursor import BufferCursor
from pagefault.system.mapping import (
    MADV_HUGEPAGE,
    PAGE,
    buffer_address,
    madvise,
    map_file_fixed,
    populate_read,
)

__all__ = ["CachedFileSource"]

log = logging.getLogger("pagefault.cache")


class CachedFileSource:
    """``below`` (peers, then the origin) behind ``cache``; ``digests`` are the pieces'
    SHA-256 where known."""

    def __init__(
        self,
        below: ChainSource,
        cache: NodeCache,
        file: FileRecord,
        *,
        piece_size: int,
        digests: Sequence[str | None],
        published: bool,
        counters: SourceCounters,
    ) -> None:
        self._below = below
        self._cache = cache
        self._file = file
        self._piece_size = piece_size
        self._digests = list(digests)
        self._published = published  # digests are the origin's word: a mismatch is an error
        self._counters = counters
        self._populated: set[int] = set()
        self._delivered: dict[str, str] = {}  # digest -> the link that just put it in a tier
        self._piece_locks = [threading.Lock() for _ in range(piece_count(file.size, piece_size))]

    @property
    def name(self) -> str:
        return self._below.name

    def size(self) -> int:
        return self._file.size

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        cursor = BufferCursor(buffers)
        position, end = offset, offset + cursor.total
        self._await_missing(offset // self._piece_size, -(-end // self._piece_size))
        while position < end:
            index = position // self._piece_size
            start, stop = self._range(index)
            take = min(stop, end) - position
            views = cursor.take(take)
            if position == start and take == stop - start:
                self._piece_into(index, views)
            else:
                whole = memoryview(bytearray(stop - start))
                self._piece_into(index, [whole])
                BufferCursor(views).write(whole[position - start : position - start + take])
            position += take

    def map_private(self) -> mmap.mmap:
        """An anonymous reservation as large as the file; :meth:`populate` fills it."""
        mapping = mmap.mmap(
            -1, max(self._file.size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
        )
        madvise(buffer_address(mapping), len(mapping), MADV_HUGEPAGE)
        return mapping

    def populate(self, mapping: mmap.mmap, offset: int, length: int) -> None:
        """Make ``[offset, offset + length)`` of ``mapping`` hold the file's bytes, checked."""
        first, last = offset // self._piece_size, -(-(offset + length) // self._piece_size)
        self._await_missing(first, last)
        for index in range(first, last):
            with self._piece_locks[index]:
                if index not in self._populated:
                    self._populate_piece(mapping, index)
                    self._populated.add(index)

    def close(self) -> None:
        self._below.close()

    def _await_missing(self, first: int, stop: int) -> None:
        """Wait once for the pieces ``first..stop-1`` that no tier holds, where a link
        below fills the cache over time: one wait on the agent link per read, not one per
        piece (a 2 MiB read of 128 KiB pieces waited up to 16 times). Without such a link
        there is nothing to wait for, and no tier is asked."""
        if not self._below.fills_over_time:
            return
        missing = [i for i in range(first, stop) if not self._held(i)]
        if len(missing) > 1:
            start, _ = self._range(missing[0])
            _, end = self._range(missing[-1])
            kind = self._below.await_range(start, end - start)
            if kind is not None:  # the cache has them now: count them where they came from
                self._delivered.update((d, kind) for i in missing if (d := self._digests[i]))

    def _held(self, index: int) -> bool:
        """Whether some tier holds the piece (a stat per tier; digests known here only)."""
        digest = self._digests[index]
        return digest is not None and self._cache.holds(digest)

    def _range(self, index: int) -> tuple[int, int]:
        start = index * self._piece_size
        return start, min(start + self._piece_size, self._file.size)

    def _piece_into(self, index: int, views: list[memoryview]) -> None:
        """Fill ``views`` (one whole piece) from the cache, or from the origin once per node."""
        self._obtain(index, views, lambda digest: self._read_cached(digest, views))

    def _populate_piece(self, mapping: mmap.mmap, index: int) -> None:
        start, stop = self._range(index)
        with memoryview(mapping) as whole:
            view = whole[start:stop]
            try:
                self._obtain(index, [view], partial(self._map_cached, mapping, index, view))
            finally:
                view.release()

    def _obtain(
        self, index: int, views: list[memoryview], use_cached: Callable[[str], bool]
    ) -> None:
        """``use_cached(digest)`` if a tier has the piece; else fetch it into ``views`` under
        the node-wide lock (re-checking first: another process may just have fetched it)."""
        digest = self._digests[index]
        if digest and use_cached(digest):
            return
        with self._cache.lock(digest or f"{self._file.key}.{index}"):
            digest = digest or self._cache.catalog.piece(self._file.key, index)
            if digest and use_cached(digest):
                return
            self._fetch(index, views)

    def _read_cached(self, digest: str, views: list[memoryview], *, count: bool = True) -> bool:
        """Fill ``views`` from a tier's copy; ``count=False`` leaves the bytes to be counted
        under the link that put the piece there (the node agent)."""
        hit = self._cache.find(digest)
        if hit is None:
            return False
        with hit.piece:
            if hit.piece.length != sum(len(v) for v in views):
                return self._reject(hit, digest, "has the wrong length")
            hit.piece.read_into(views)
            if not hit.piece.matches(views):
                return self._reject(hit, digest, "fails its checksum")
        if count:
            self._count_hit(hit, digest, views)
        else:
            self._keep_warm(hit, digest, views)
        return True

    def _map_cached(self, mapping: mmap.mmap, index: int, view: memoryview, digest: str) -> bool:
        """Map a RAM-tier piece over its place in ``mapping``; slower tiers are read."""
        hit = self._cache.find(digest)
        if hit is None:
            return False
        if hit.tier is not self._cache.ram:
            hit.piece.close()
            return self._read_cached(digest, [view])
        with hit.piece:
            if hit.piece.length != len(view):
                return self._reject(hit, digest, "has the wrong length")
            address = buffer_address(mapping) + index * self._piece_size
            length = len(view) + (-len(view) % PAGE)
            try:
                map_file_fixed(address, length, hit.piece.fd)
            except OSError as exc:
                raise SourceError(
                    f"{self.name}: cannot map cached piece {index} ({digest}) into the "
                    f"load's memory: {exc.strerror or exc}"
                ) from exc
            populate_read(mapping, buffer_address(mapping), index * self._piece_size, len(view))
            if not hit.piece.matches([view]):
                return self._reject(hit, digest, "fails its checksum")
        self._count_hit(hit, digest, [view])
        return True

    def _fetch(self, index: int, views: list[memoryview]) -> None:
        """Read a piece from the first link below that delivers it intact; tee it."""
        start = index * self._piece_size
        expected = self._digests[index]
        from_cache = (
            None if expected is None else partial(self._read_cached, expected, views, count=False)
        )
        if self._published and expected is not None:
            check = partial(piece_matches, digest=expected)
            delivery = self._below.read_checked(
                start, views, check, from_cache, what=f"piece {index}"
            )
            actual = expected
        else:
            delivery = self._below.read_checked(start, views, None, from_cache)
            actual = hash_piece(views, SHA256)
        # A piece read out of the cache is there already (the agent's disk tier links to
        # its seed file): storing it again wrote a second, fsynced disk copy whenever this
        # process had not yet re-read the agent's link table (every 50 ms at most).
        if not delivery.from_cache:
            self._cache.store(actual, views)
        if expected is None:
            self._cache.catalog.learn(self._file.key, index, actual)
            self._digests[index] = actual

    def _count_hit(self, hit: CacheHit, digest: str, views: list[memoryview]) -> None:
        size = sum(len(v) for v in views)
        self._counters.add(self._delivered.pop(digest, hit.tier.name), size)
        self._keep_warm(hit, digest, views)

    def _keep_warm(self, hit: CacheHit, digest: str, views: list[memoryview]) -> None:
        """A piece read from a slower tier goes into the RAM tier too."""
        if hit.tier is not self._cache.ram:
            self._cache.promote(digest, views)

    def _reject(self, hit: CacheHit, digest: str, why: str) -> bool:
        log.warning(
            "%s: cached piece %s %s; dropped, fetching it again", self.name, hit.piece.path, why
        )
        hit.tier.drop(digest)  # only this copy: another tier's may be good
        self._counters.corrupt()
        return False
