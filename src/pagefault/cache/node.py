"""The node cache: tiers of piece files, the catalog, and the locks that make it shared.

Pieces are written through to every tier (RAM first, then disk), each tier evicting
least recently used pieces on its own to stay under its capacity. A piece found only
on disk is promoted back to RAM by whoever reads it. Eviction never removes pieces of
a pinned URI or of a file some live process holds a lease on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pagefault.cache.catalog import Catalog
from pagefault.cache.config import CacheConfig, load_config, nearest_existing
from pagefault.cache.locks import FileLock, Lease, live_leases
from pagefault.cache.tier import PieceFile, PieceTier
from pagefault.errors import CacheError

__all__ = ["CacheChoice", "CacheHit", "NodeCache", "node_cache"]

log = logging.getLogger("pagefault.cache")


@dataclass
class CacheHit:
    """An open cached piece and the tier it was found in."""

    tier: PieceTier
    piece: PieceFile


class NodeCache:
    """One node's cache, shared by every process that opens the same directories."""

    def __init__(self, config: CacheConfig | None = None) -> None:
        self.config = (config or load_config()).resolved()
        assert self.config.disk_capacity is not None and self.config.ram_capacity is not None
        disk = PieceTier(self.config.disk_dir, self.config.disk_capacity, name="disk", durable=True)
        ram_dir = self.config.ram_dir
        if ram_dir is not None and not nearest_existing(ram_dir).is_dir():
            ram_dir = None  # no /dev/shm here: disk tier only
        ram = (
            PieceTier(ram_dir, self.config.ram_capacity, name="ram", durable=False)
            if ram_dir
            else None
        )
        self.tiers = [t for t in (ram, disk) if t is not None and t.capacity > 0]
        self.catalog = Catalog(self.config.disk_dir)
        self.runtime = ram_dir or self.config.disk_dir  # locks and leases: fast, local
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()

    @property
    def ram(self) -> PieceTier | None:
        return next((t for t in self.tiers if t.name == "ram"), None)

    def lock(self, key: str) -> FileLock:
        """The cross-process lock that makes one process fetch a piece while others wait."""
        return FileLock(self.runtime / "locks" / key)

    def lease(self, file_keys: Iterable[str]) -> Callable[[], None]:
        """Claim files for a reader; returns the release. A full runtime dir skips the claim."""
        try:
            return Lease(self.runtime / "leases", file_keys).release
        except OSError as exc:
            self._warn("lease", f"cannot record a read lease in {self.runtime}: {exc}")
            return lambda: None

    def holds(self, sha: str) -> bool:
        """Whether some tier has a piece (a stat per tier; its bytes are checked on use)."""
        return any(tier.has(sha) for tier in self.tiers)

    def find(self, sha: str) -> CacheHit | None:
        """The fastest tier's copy of a piece, if any tier has one."""
        for tier in self.tiers:
            piece = tier.open(sha)
            if piece is not None:
                return CacheHit(tier, piece)
        return None

    def store(
        self,
        sha: str,
        chunks: Sequence[memoryview],
        *,
        skip: PieceTier | None = None,
        held_at: tuple[Path, int] | None = None,
    ) -> None:
        """Write a verified piece to every tier that takes it; a full tier is bypassed.

        ``held_at``: a file (and offset) that already holds the piece and stays (the swarm
        agent's seed files): the disk tier links to it instead of keeping a second copy.
        """
        for tier in self.tiers:
            if tier is skip:
                continue
            try:
                if held_at is not None and tier is not self.ram:
                    tier.link(sha, *held_at, chunks)
                    continue
                stored = tier.put(sha, chunks, self.protected)
            except CacheError as exc:
                self._warn(tier.name, f"{exc}; loading on without this tier")
                continue
            if not stored:
                self._warn(tier.name, f"{tier.name} cache {tier.root} is full; pieces bypass it")

    def promote(self, sha: str, chunks: Sequence[memoryview]) -> None:
        """Copy a piece read from a slower tier into the faster ones."""
        ram = self.ram
        if ram is not None and not ram.has(sha):
            self.store(sha, chunks, skip=next(t for t in self.tiers if t is not ram))

    def drop(self, sha: str) -> int:
        """Delete a piece from every tier; returns the bytes freed."""
        return sum(tier.drop(sha) for tier in self.tiers)

    def protected(self) -> set[str]:
        """Pieces eviction must keep: those of pinned URIs and of leased files."""
        keys = live_leases(self.runtime / "leases")
        for uri in self.catalog.pinned():
            record = self.catalog.record(uri)
            if record is not None:
                keys.update(f.key for f in record.files)
        return {sha for key in keys for sha in self.catalog.known(key)}

    def stale_temp_files(self) -> int:
        tiers = sum(tier.remove_stale_temps() for tier in self.tiers)
        return tiers + self.catalog.remove_stale_temps()

    def _warn(self, key: str, message: str) -> None:
        with self._warn_lock:
            if key not in self._warned:
                self._warned.add(key)
                log.warning(message)


# None: the configured default (on unless PAGEFAULT_CACHE=off); False: bypass; True: on.
CacheChoice = bool | NodeCache | None


def node_cache(cache: CacheChoice) -> NodeCache | None:
    """The cache a call asked for (``cache=`` of loads and of ``compile_cache``), or None
    when it should not use one."""
    if isinstance(cache, NodeCache):
        return cache
    if cache is False:
        return None
    config = load_config()
    return NodeCache(config) if cache or config.enabled else None
