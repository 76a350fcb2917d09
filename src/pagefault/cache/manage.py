"""What ``pagefault cache ...`` does: list, inspect, pin, evict, verify, collect, prefetch.

Each operation returns plain data (dataclasses) for the CLI to print as text or JSON.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pagefault.cache.catalog import UriRecord
from pagefault.cache.locks import live_leases, reap_unheld
from pagefault.cache.node import NodeCache
from pagefault.cache.resolve import cached_description, cached_sources
from pagefault.cache.tier import PieceTier
from pagefault.errors import CacheError, NotFound
from pagefault.manifest import piece_matches
from pagefault.pieces.engine import map_pieces
from pagefault.sources import Source
from pagefault.sources.chain import ChainSource, Link, SourceCounters

__all__ = [
    "EntryInfo",
    "GcReport",
    "TierInfo",
    "VerifyResult",
    "entries",
    "entry",
    "evict",
    "gc",
    "pin",
    "prefetch",
    "tiers",
    "unpin",
    "verify",
]

_PREFETCHERS = 16


@dataclass(frozen=True)
class TierInfo:
    name: str
    root: str
    capacity: int
    used: int
    pieces: int


@dataclass(frozen=True)
class EntryInfo:
    """One cached URI: its size, how much of it each tier holds, whether it is pinned."""

    uri: str
    bytes: int
    files: int
    cached: dict[str, int]
    pinned: bool
    verified: bool
    updated: float


@dataclass
class VerifyResult:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GcReport:
    temp_files: int
    lock_files: int
    forgotten_files: int
    tiers: list[TierInfo]


def tiers(cache: NodeCache) -> list[TierInfo]:
    return [_tier_info(tier) for tier in cache.tiers]


def entries(cache: NodeCache) -> list[EntryInfo]:
    pinned = cache.catalog.pinned()
    return [_entry(cache, record, record.uri in pinned) for record in cache.catalog.records()]


def entry(cache: NodeCache, uri: str) -> EntryInfo:
    return _entry(cache, _record(cache, uri), uri in cache.catalog.pinned())


def pin(cache: NodeCache, uri: str) -> None:
    _record(cache, uri)
    cache.catalog.pin(uri)


def unpin(cache: NodeCache, uri: str) -> None:
    _record(cache, uri)
    cache.catalog.unpin(uri)


def evict(cache: NodeCache, uri: str) -> int:
    """Drop a URI's pieces (those no other cached URI uses) and its record; bytes freed."""
    record = _record(cache, uri)
    if uri in cache.catalog.pinned():
        raise CacheError(f"{uri} is pinned; `pagefault cache unpin {uri}` first")
    keys = {f.key for f in record.files}
    if keys & live_leases(cache.runtime / "leases"):
        raise CacheError(f"{uri} is being loaded by a running process; try again when it is done")
    others = {f.key for r in cache.catalog.records() if r.uri != uri for f in r.files}
    keep = {sha for key in others for sha in cache.catalog.known(key)} | cache.protected()
    freed = 0
    for key in keys:
        for sha in cache.catalog.known(key) - keep:
            freed += cache.drop(sha)
        if key not in others:
            cache.catalog.drop_file(key)
    cache.catalog.forget(uri)
    return freed


def verify(cache: NodeCache, uri: str | None = None) -> VerifyResult:
    """Re-hash cached pieces (SHA-256 and the at-rest checksum); corrupt ones are dropped."""
    wanted: set[str] | None = None
    if uri is not None:
        wanted = {s for f in _record(cache, uri).files for s in cache.catalog.known(f.key)}
    result = VerifyResult()
    for tier in cache.tiers:
        for stored in tier.scan():
            if wanted is None or stored.sha in wanted:
                result.checked += 1
                if not _piece_ok(tier, stored.sha):
                    tier.drop(stored.sha)
                    result.corrupt.append(f"{tier.name}:{stored.sha}")
    return result


def gc(cache: NodeCache) -> GcReport:
    """Remove what dead processes left, forget unreferenced files, enforce capacities."""
    temps = cache.stale_temp_files()
    locks = _remove_unheld_locks(cache.runtime / "locks")
    live_leases(cache.runtime / "leases")  # removes stale leases as it reads them
    referenced = {f.key for r in cache.catalog.records() for f in r.files}
    forgotten = 0
    for key in cache.catalog.file_keys() - referenced:
        cache.catalog.drop_file(key)
        forgotten += 1
    for tier in cache.tiers:
        tier.make_room(0, cache.protected)
    return GcReport(temps, locks, forgotten, tiers(cache))


def prefetch(
    cache: NodeCache, uri: str, *, on_progress: Callable[[int], None] | None = None
) -> EntryInfo:
    """Bring every piece of ``uri`` into the cache (from the origin) without loading it."""
    description, recorded = cached_description(uri, cache)
    counters = SourceCounters()
    chains = [ChainSource([Link("origin", origin)], counters) for origin in description.origins()]
    sources, provenance = cached_sources(recorded, chains, cache, counters)
    try:
        piece = recorded.record.piece_size
        jobs = [
            (source, start, min(start + piece, source.size()))
            for source in sources
            for start in range(0, source.size(), piece)
        ]
        scratch = threading.local()

        def fetch(job: tuple[Source, int, int]) -> None:
            source, start, end = job
            buffer = getattr(scratch, "buffer", None)
            if buffer is None or len(buffer) < end - start:
                buffer = scratch.buffer = bytearray(end - start)
            source.read_into(start, [memoryview(buffer)[: end - start]])
            if on_progress is not None:
                on_progress(end - start)

        map_pieces(fetch, jobs, threads=_PREFETCHERS, name="prefetch")
    finally:
        for source in sources:
            source.close()
        for release in provenance.on_close:
            release()
    return entry(cache, uri)


def _record(cache: NodeCache, uri: str) -> UriRecord:
    record = cache.catalog.record(uri)
    if record is None:
        raise NotFound(f"{uri} is not in the node cache (`pagefault cache prefetch {uri}`)")
    return record


def _entry(cache: NodeCache, record: UriRecord, pinned: bool) -> EntryInfo:
    shas = [sha for file in record.files for sha in cache.catalog.known(file.key)]
    cached = {tier.name: sum(tier.held(sha) for sha in shas) for tier in cache.tiers}
    return EntryInfo(
        record.uri,
        record.total_bytes,
        len(record.files),
        cached,
        pinned,
        record.verified,
        record.updated,
    )


def _tier_info(tier: PieceTier) -> TierInfo:
    pieces = tier.scan()
    return TierInfo(
        tier.name, str(tier.root), tier.capacity, sum(p.size for p in pieces), len(pieces)
    )


def _piece_ok(tier: PieceTier, sha: str) -> bool:
    piece = tier.open(sha)
    if piece is None:
        return False
    with piece:
        data = memoryview(bytearray(piece.length))
        piece.read_into([data])
        return piece.matches([data]) and piece_matches([data], sha)


def _remove_unheld_locks(directory: Path) -> int:
    """Lock files whose holder died before unlinking them (never one that is held)."""
    paths = list(directory.iterdir()) if directory.is_dir() else []
    return sum(reap_unheld(path) is False for path in paths)
