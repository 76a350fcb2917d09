"""An ordered chain of links below the node cache: swarm peers (through the node agent),
then the origin. Each range is read from the first link that delivers it.

A link that fails (its agent died, timed out, or its job failed) is skipped for the rest
of the load with one warning that names the cause, and the range is read from the next
link: never slower than the origin alone. When the caller checks what a link delivered
(the cache does, against the piece's digest), a corrupt range is counted, dropped, and
read from the next link; only the last link's corrupt bytes are an error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pagefault.errors import IntegrityError, SourceError
from pagefault.sources.base import AwaitableSource, Buffer, Source

__all__ = ["SOURCE_KINDS", "ChainSource", "Delivery", "Link", "SourceCounters"]

log = logging.getLogger("pagefault.sources")

# Where a load's bytes came from, cheapest first: the keys of ``LoadStats.bytes_by_source``.
SOURCE_KINDS = ("local", "ram", "disk", "peers", "origin")

Check = Callable[[Sequence[Buffer]], bool]


class SourceCounters:
    """Bytes by where they came from, corrupt pieces caught, and one warning per cause.

    Shared by every file of one load; thread-safe."""

    def __init__(self) -> None:
        self._bytes = dict.fromkeys(SOURCE_KINDS, 0)
        self.corrupt_pieces = 0
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def add(self, kind: str, count: int) -> None:
        with self._lock:
            self._bytes[kind] += count

    def corrupt(self) -> None:
        with self._lock:
            self.corrupt_pieces += 1

    def bytes_by_source(self) -> dict[str, int]:
        with self._lock:
            return dict(self._bytes)

    def warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning(message)


@dataclass(frozen=True)
class Link:
    """One way to get a file's bytes: ``kind`` is its key in ``bytes_by_source``.

    ``fills_cache``: the link's filler also puts every verified piece in the node cache
    (the agent does), so a reader through the cache waits for the range and then reads
    the cache's copy."""

    kind: str
    source: Source
    fills_cache: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"link kind {self.kind!r}; expected one of {SOURCE_KINDS}")


@dataclass(frozen=True)
class Delivery:
    """Which link delivered a range, and whether the reader took it from the node cache
    (``from_cache``: that link's filler stored it there already, so there is nothing to
    tee)."""

    kind: str
    from_cache: bool = False


class ChainSource:
    """One file read through ``links`` in order (the last is normally the origin)."""

    def __init__(self, links: Sequence[Link], counters: SourceCounters) -> None:
        if not links:
            raise ValueError("a chain needs at least one link")
        self._links = list(links)
        self._counters = counters
        self._failed: set[int] = set()

    @property
    def name(self) -> str:
        return self._links[-1].source.name

    def size(self) -> int:
        return self._links[-1].source.size()

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        self.read_checked(offset, buffers)

    def read_checked(
        self,
        offset: int,
        buffers: Sequence[Buffer],
        check: Check | None = None,
        from_cache: Callable[[], bool] | None = None,
        what: str = "",
    ) -> Delivery:
        """Fill ``buffers`` from the first link that delivers (and passes ``check``);
        says which one it was. Counts the bytes under it. ``from_cache()`` fills them
        from the node cache, if it has them, after a cache-filling link's wait. ``what``
        names the range in messages (``piece 3``)."""
        size = sum(memoryview(b).nbytes for b in buffers)
        for position, link in enumerate(self._links):
            last = position == len(self._links) - 1
            if position in self._failed and not last:
                continue
            try:
                if from_cache is not None and self._awaited(link, offset, size, from_cache):
                    self._counters.add(link.kind, size)
                    return Delivery(link.kind, from_cache=True)
                link.source.read_into(offset, buffers)
            except SourceError as exc:
                if last:
                    raise
                self._fail(position, link, exc)
                continue
            if check is not None and not check(buffers):
                self._counters.corrupt()
                message = self._corrupt_message(link, offset, offset + size, what)
                if last:
                    raise IntegrityError(message)
                log.warning("%s; reading it from the next source", message)
                continue
            self._counters.add(link.kind, size)
            return Delivery(link.kind)
        raise AssertionError("unreachable: the last link either returns or raises")

    @property
    def fills_over_time(self) -> bool:
        """Whether a live link fills the node cache as its pieces arrive (the swarm): only
        then can a wait on it (``await_range``) bring pieces into the cache."""
        return self._live_filling() is not None

    def await_range(self, offset: int, length: int) -> str | None:
        """Wait once for a whole range on the first live link that fills the cache over
        time (the swarm), so the reads that follow, piece by piece, find it there; returns
        that link's kind (None: no such link, or it failed and is skipped from now on)."""
        live = self._live_filling()
        if live is None:
            return None
        position, link, filling = live
        try:
            filling.await_range(offset, length)
        except SourceError as exc:
            self._fail(position, link, exc)
            return None
        return link.kind

    def _live_filling(self) -> tuple[int, Link, AwaitableSource] | None:
        """The first link not failed (the last, the origin, aside) that fills the cache."""
        for position, link in enumerate(self._links[:-1]):
            filling = _filling(link)
            if position not in self._failed and filling is not None:
                return position, link, filling
        return None

    @staticmethod
    def _awaited(link: Link, offset: int, size: int, from_cache: Callable[[], bool]) -> bool:
        filling = _filling(link)
        if filling is None:
            return False
        filling.await_range(offset, size)
        return from_cache()

    def close(self) -> None:
        for link in self._links:
            link.source.close()

    def _fail(self, position: int, link: Link, exc: SourceError) -> None:
        self._failed.add(position)
        self._counters.warn_once(
            f"{link.kind}:{type(exc).__name__}",
            f"{link.source.name}: {link.kind} link failed ({exc}); "
            f"reading from {self._links[position + 1].kind} instead",
        )

    def _corrupt_message(self, link: Link, offset: int, end: int, what: str) -> str:
        where = f"{what} (bytes [{offset}, {end}))" if what else f"bytes [{offset}, {end})"
        blame = "; the origin's bytes were corrupted or the model changed"
        return (
            f"{self.name}: {where} from {link.kind} do not match the manifest's digest"
            f"{blame if link.kind == 'origin' else ''}"
        )


def _filling(link: Link) -> AwaitableSource | None:
    """The link's source if its filler puts verified pieces in the node cache as they
    arrive (the swarm): a reader waits for a range on it, then reads the cache's copy."""
    if link.fills_cache and isinstance(link.source, AwaitableSource):
        return link.source
    return None
