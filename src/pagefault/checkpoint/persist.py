"""Persist a snapshot: stream each shard to the writer, hash its pieces, commit.

Two kinds of work run at once, on two thread pools, straight out of the snapshot:

* **writes** — one task per shard (a file or an object upload is a sequential stream;
  several shards go out in parallel). Local writes go from the page-aligned staging
  buffer to the device with O_DIRECT (``local.ShardFile``), using almost no CPU.
* **hashes** — the digest of every piece for the piece manifest (BLAKE3 by default:
  SHA-256 runs at a fraction of disk speed on CPUs without SHA extensions), one task per
  ``request_size`` unit, any thread, any order (pieces hash independently). Both hash
  libraries release the GIL, so hashing uses the cores while the writes wait on the disk.

Then the writer commits: piece manifest, then the index, last. Any failure stops
the other tasks at their next chunk and aborts the writer.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from typing import Any

from pagefault import metrics
from pagefault.checkpoint.plan import INDEX_NAME, SavePlan, WorkUnit, plan_units
from pagefault.checkpoint.snapshot import Snapshot
from pagefault.checkpoint.writers import CheckpointWriter
from pagefault.errors import CheckpointError
from pagefault.manifest import (
    BLAKE3,
    MANIFEST_NAME,
    FileDigest,
    PieceHash,
    PieceHasher,
    PieceManifest,
    piece_count,
)
from pagefault.manifest.pieces import digest_piece

__all__ = ["PersistConfig", "Persister", "SaveStats", "slice_views"]


@dataclass(frozen=True)
class PersistConfig:
    """Knobs of the background half of a save."""

    request_size: int
    piece_size: int
    hash_threads: int
    write_threads: int
    hash_pieces: bool = True
    piece_hash: PieceHash = BLAKE3


@dataclass
class SaveStats:
    """One save's numbers. ``stall_s`` is what the caller waited; the rest ran behind it."""

    location: str = ""
    bytes: int = 0
    tensors: int = 0
    files: int = 0
    mode: str = ""
    stall_s: float = 0.0
    buffer_wait_s: float = 0.0
    snapshot_s: float = 0.0
    persist_s: float = 0.0
    write_s: float = 0.0
    hash_s: float = 0.0
    commit_s: float = 0.0
    hashed: bool = True
    piece_hash: str = BLAKE3
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def gbps(self) -> float:
        """Persistence throughput in GB/s (10^9 bytes per second)."""
        return self.bytes / self.persist_s / 1e9 if self.persist_s > 0 else 0.0

    def add(self, *, write_s: float = 0.0, hash_s: float = 0.0) -> None:
        with self._lock:
            self.write_s += write_s
            self.hash_s += hash_s

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
        data["gbps"] = round(self.gbps, 3)
        return data


def slice_views(views: Sequence[memoryview], start: int, end: int) -> list[memoryview]:
    """The parts of ``views`` (concatenated) covering bytes ``[start, end)``."""
    bounds = [0]
    for view in views:
        bounds.append(bounds[-1] + view.nbytes)
    out = []
    first = max(0, bisect.bisect_right(bounds, start) - 1)
    for i in range(first, len(views)):
        lo, hi = max(start, bounds[i]), min(end, bounds[i + 1])
        if lo >= end:
            break
        if hi > lo:
            out.append(views[i][lo - bounds[i] : hi - bounds[i]])
    return out


class Persister:
    """Runs once, on a background thread: writes, hashes, then commits through ``writer``."""

    def __init__(
        self,
        plan: SavePlan,
        snapshot: Snapshot,
        writer: CheckpointWriter,
        *,
        config: PersistConfig,
        stats: SaveStats,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.plan = plan
        self.snapshot = snapshot
        self.writer = writer
        self.config = config
        self.stats = stats
        self.written = 0
        self._on_progress = on_progress
        self._units = plan_units(
            plan, request_size=config.request_size, piece_size=config.piece_size
        )
        self._pieces: dict[tuple[int, int], tuple[str, str | None]] = {}
        self._failed = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        """Persist and commit; on failure abort the writer and re-raise."""
        started = time.perf_counter()
        try:
            self.snapshot.ready()
            self._write_and_hash()
            committing = time.perf_counter()
            self.writer.commit([s.name for s in self.plan.shards], self._small_files())
            self.stats.commit_s = time.perf_counter() - committing
        except BaseException:
            self.writer.abort()
            raise
        finally:
            self.stats.persist_s = time.perf_counter() - started
        metrics.record_save(
            mode=self.stats.mode,
            nbytes=self.stats.bytes,
            phase_seconds={
                "stall": self.stats.stall_s,
                "snapshot": self.stats.snapshot_s,
                "persist": self.stats.persist_s,
                "commit": self.stats.commit_s,
            },
        )

    def _write_and_hash(self) -> None:
        writers = ThreadPoolExecutor(
            self.config.write_threads, thread_name_prefix="pagefault-write"
        )
        hashers = ThreadPoolExecutor(self.config.hash_threads, thread_name_prefix="pagefault-hash")
        with writers, hashers:
            futures: list[Future[None]] = [
                writers.submit(self._write_shard, i) for i in range(len(self.plan.shards))
            ]
            if self.config.hash_pieces:
                futures += [hashers.submit(self._hash_unit, unit) for unit in self._units]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                self._failed.set()
                for future in futures:
                    future.cancel()
                raise failed.exception()  # type: ignore[misc]

    def _write_shard(self, shard: int) -> None:
        started = time.perf_counter()
        self.writer.write_file(self.plan.shards[shard].name, self._chunks(shard))
        self.stats.add(write_s=time.perf_counter() - started)

    def _chunks(self, shard: int) -> Iterator[memoryview]:
        views = self.snapshot.files[shard]
        for unit in self._units:
            if unit.shard != shard:
                continue
            for part in slice_views(views, unit.start, unit.end):
                if self._failed.is_set():
                    raise CheckpointError(
                        f"{self.writer.location}: save stopped by another failure"
                    )
                yield part.cast("B")
                self._advance(part.nbytes)

    def _advance(self, nbytes: int) -> None:
        with self._lock:
            self.written += nbytes
        if self._on_progress is not None:
            self._on_progress(nbytes)

    def _hash_unit(self, unit: WorkUnit) -> None:
        started = time.perf_counter()
        views = self.snapshot.files[unit.shard]
        size = self.config.piece_size
        for start in range(unit.start, unit.end, size):
            if self._failed.is_set():
                return
            chunks = slice_views(views, start, min(start + size, unit.end))
            pieces = piece_count(self.plan.shards[unit.shard].size, size)
            digest = digest_piece(chunks, size, pieces=pieces, algorithm=self.config.piece_hash)
            self._pieces[(unit.shard, start // size)] = digest  # distinct keys: no lock needed
        self.stats.add(hash_s=time.perf_counter() - started)

    def _small_files(self) -> list[tuple[str, bytes]]:
        """The piece manifest (when hashing) and the index, which must come last."""
        index = self.plan.index_json()
        if not self.config.hash_pieces:
            return [(INDEX_NAME, index)]
        size = self.config.piece_size
        digests = [
            FileDigest.from_pieces(
                shard.name,
                shard.size,
                [self._pieces[(i, k)] for k in range(piece_count(shard.size, size))],
            )
            for i, shard in enumerate(self.plan.shards)
        ]
        hasher = PieceHasher(size, self.config.piece_hash)
        hasher.update(index)
        manifest = PieceManifest(size, (*digests, hasher.finish(INDEX_NAME)))
        return [(MANIFEST_NAME, manifest.to_json()), (INDEX_NAME, index)]
