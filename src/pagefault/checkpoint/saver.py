"""Start a save: plan, snapshot under the staging budget, persist in the background.

The caller's stall is planning (microseconds), waiting for a staging buffer (only
when an earlier save still holds the budget), and one copy of the bytes into it.
Persistence runs on a non-daemon thread: the interpreter waits for pending saves at
exit instead of dropping them. Errors surface from ``SaveHandle.wait()``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from pagefault.checkpoint.buffers import HostBuffer, StagingPool, default_pool
from pagefault.checkpoint.persist import PersistConfig, Persister, SaveStats
from pagefault.checkpoint.plan import DEFAULT_MAX_SHARD_SIZE, SavePlan, plan_save
from pagefault.checkpoint.snapshot import Snapshot, can_write_directly, direct, specs_of, stage
from pagefault.checkpoint.writers import CheckpointWriter
from pagefault.errors import CheckpointError
from pagefault.manifest import BLAKE3, DEFAULT_PIECE_SIZE, PIECE_HASHES, PieceHash
from pagefault.pieces.engine import check_threads
from pagefault.pipeline.tuning import DEFAULT_REQUEST_SIZE
from pagefault.system.machine import cpu_count

__all__ = ["SaveHandle", "SaveOptions", "start_save"]

_MAX_THREADS = 16


@dataclass(frozen=True)
class SaveOptions:
    """How to save; every field has a default (see ``pagefault.save`` for each)."""

    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE
    threads: int | None = None
    staging_budget: int | None = None
    hash_pieces: bool = True
    piece_hash: PieceHash = BLAKE3
    request_size: int = DEFAULT_REQUEST_SIZE
    piece_size: int = DEFAULT_PIECE_SIZE
    metadata: Mapping[str, str] | None = None

    def persist_config(self, shards: int) -> PersistConfig:
        check_threads(self.threads)
        if self.piece_hash not in PIECE_HASHES:
            raise CheckpointError(
                f"piece_hash must be one of {PIECE_HASHES}, got {self.piece_hash!r}"
            )
        threads = _copy_threads(self)
        return PersistConfig(
            request_size=self.request_size,
            piece_size=self.piece_size,
            hash_threads=threads,
            write_threads=min(shards, threads),
            hash_pieces=self.hash_pieces,
            piece_hash=self.piece_hash,
        )


class SaveHandle:
    """A save in progress: ``wait()`` for it, ``done()`` to poll, ``progress`` to watch.

    >>> handle = pagefault.save(model.state_dict(), "ckpt/step-100")  # doctest: +SKIP
    >>> optimizer.step()  # free to modify the tensors: the snapshot is taken  # doctest: +SKIP
    >>> handle.wait()  # raises CheckpointError if persisting failed  # doctest: +SKIP
    """

    def __init__(self, persister: Persister) -> None:
        self._persister = persister
        self._finished = threading.Event()
        self._error: BaseException | None = None

    @property
    def location(self) -> str:
        return self._persister.writer.location

    @property
    def stats(self) -> SaveStats:
        """Timings and sizes; ``persist_s`` and throughput are final once ``done()``."""
        return self._persister.stats

    @property
    def total_bytes(self) -> int:
        return self._persister.plan.file_bytes

    @property
    def bytes_written(self) -> int:
        return self._persister.written

    @property
    def progress(self) -> float:
        """Fraction of the checkpoint's bytes handed to the writer, 0.0 to 1.0."""
        total = self.total_bytes
        return self.bytes_written / total if total else 1.0

    def done(self) -> bool:
        """True once the save has committed or failed."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> SaveStats:
        """Block until the checkpoint is committed; raise ``CheckpointError`` if it failed."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"save to {self.location} still running after {timeout} s")
        if self._error is not None:
            raise self._error
        return self.stats

    def __repr__(self) -> str:
        state = "failed" if self._error else "done" if self.done() else f"{self.progress:.0%}"
        return f"SaveHandle({self.location!r}, {state})"

    def _run(self, release: Callable[[], None]) -> None:
        try:
            self._persister.run()
        except CheckpointError as exc:
            self._error = exc
        except Exception as exc:
            error = CheckpointError(f"saving {self.location} failed: {exc}")
            error.__cause__ = exc
            self._error = error
        finally:
            release()
            self._finished.set()


def start_save(
    state_dict: Mapping[str, torch.Tensor],
    writer: CheckpointWriter,
    options: SaveOptions,
    *,
    async_: bool = True,
    pool: StagingPool | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SaveHandle:
    """Snapshot ``state_dict`` and persist it through ``writer``; see ``pagefault.save``."""
    started = time.perf_counter()
    specs, tensors = specs_of(state_dict)
    plan = plan_save(specs, max_shard_size=options.max_shard_size, metadata=options.metadata)
    config = options.persist_config(len(plan.shards))
    writer.open()
    stats = SaveStats(
        location=writer.location,
        bytes=plan.file_bytes,
        tensors=len(specs),
        files=len(plan.shards),
        hashed=options.hash_pieces,
        piece_hash=options.piece_hash,
    )
    pool = pool or default_pool()
    try:
        snapshot, buffer = _snapshot(plan, tensors, options, stats, async_=async_, pool=pool)
    except BaseException:
        writer.abort()
        raise
    stats.stall_s = time.perf_counter() - started
    persister = Persister(
        plan, snapshot, writer, config=config, stats=stats, on_progress=on_progress
    )
    handle = SaveHandle(persister)
    release = (lambda: pool.release(buffer)) if buffer is not None else (lambda: None)
    if not async_:
        handle._run(release)
        handle.wait()
        return handle
    thread = threading.Thread(target=handle._run, args=(release,), name="pagefault-save")
    thread.start()
    return handle


def _copy_threads(options: SaveOptions) -> int:
    return options.threads or min(_MAX_THREADS, max(2, cpu_count()))


def _snapshot(
    plan: SavePlan,
    tensors: list[torch.Tensor],
    options: SaveOptions,
    stats: SaveStats,
    *,
    async_: bool,
    pool: StagingPool,
) -> tuple[Snapshot, HostBuffer | None]:
    """Copy into a pooled buffer, or (synchronous, CPU, contiguous) use the tensors as they are."""
    if not async_ and can_write_directly(tensors):
        stats.mode = "direct"
        return direct(plan, tensors), None
    pinned = any(t.device.type == "cuda" for t in tensors)
    buffer, stats.buffer_wait_s = pool.acquire(
        plan.buffer_bytes, pinned=pinned, budget=options.staging_budget
    )
    copying = time.perf_counter()
    try:
        snapshot = stage(plan, tensors, buffer, threads=_copy_threads(options))
    except BaseException as exc:
        pool.release(buffer)
        if isinstance(exc, RuntimeError):
            raise CheckpointError(f"snapshot for {stats.location} failed: {exc}") from exc
        raise
    stats.snapshot_s = time.perf_counter() - copying
    stats.mode = "pinned" if pinned else "staged"
    return snapshot, buffer
