"""What a worker does with one read task: read it into its destinations, or map it in."""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import torch

from pagefault.pipeline.destinations import ARENA_ALIGNMENT, Destination
from pagefault.pipeline.plan import ReadTask, Segment
from pagefault.pipeline.staging import StagingRing, StagingSlot
from pagefault.pipeline.stats import LoadStats
from pagefault.pipeline.verify import PieceVerifier
from pagefault.sources import MappableSource, Source
from pagefault.system.mapping import populate_write

__all__ = ["PopulateRunner", "ReadRunner"]

ProgressCallback = Callable[[int], None]


class ReadRunner:
    """Reads a task from its source straight into direct destinations or a staging slot."""

    def __init__(
        self,
        sources: Sequence[Source],
        destinations: Sequence[Destination],
        *,
        stats: LoadStats,
        ring: StagingRing | None = None,
        copy_stream: torch.cuda.Stream | None = None,
        verifier: PieceVerifier | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._sources = sources
        self._verifier = verifier
        self._destinations = destinations
        self._stats = stats
        self._ring = ring
        self._copy_stream = copy_stream
        self._on_progress = on_progress

    def __call__(self, task: ReadTask) -> None:
        staged = [s for s in task.segments if self._destinations[s.tensor].staged]
        slot, stalled = self._ring.acquire() if staged and self._ring else (None, 0.0)
        try:
            buffers, positions = self._buffers(task, slot)
            started = time.perf_counter()
            for segment, buffer in zip(task.segments, buffers, strict=True):
                if self._destinations[segment.tensor].fresh:  # one buffer per segment
                    populate_write(buffer)
            self._sources[task.file_index].read_into(task.file_offset, buffers)
            read_done = time.perf_counter()
            if self._verifier is not None:
                self._verifier.verify(task, buffers)
            verify_done = time.perf_counter()
            if slot is not None:
                self._copy_out(slot, positions)
        finally:
            if slot is not None and self._ring is not None:
                self._ring.release(slot, self._copy_stream)
        self._stats.add(
            read_s=read_done - started,
            verify_s=verify_done - read_done,
            copy_s=time.perf_counter() - verify_done,
            stall_s=stalled,
        )
        if self._on_progress is not None:
            self._on_progress(task.length)

    def _buffers(
        self, task: ReadTask, slot: StagingSlot | None
    ) -> tuple[list[memoryview], list[tuple[Segment, int]]]:
        """Destination views for each segment; staged ones get aligned places in the slot."""
        buffers: list[memoryview] = []
        positions: list[tuple[Segment, int]] = []
        cursor = 0
        for segment in task.segments:
            direct = self._destinations[segment.tensor].direct
            if direct is not None:
                buffers.append(direct[segment.offset : segment.offset + segment.length])
                continue
            assert slot is not None  # a staged segment always comes with a slot
            buffers.append(slot.view[cursor : cursor + segment.length])
            positions.append((segment, cursor))
            cursor += segment.length + (-segment.length % ARENA_ALIGNMENT)
        return buffers, positions

    def _copy_out(self, slot: StagingSlot, positions: list[tuple[Segment, int]]) -> None:
        """Convert/copy staged segments into their tensors (async on the CUDA side stream)."""
        stream = self._copy_stream
        context: AbstractContextManager[object] = (
            torch.cuda.stream(stream) if stream is not None else nullcontext()
        )
        with context:
            for segment, position in positions:
                dest = self._destinations[segment.tensor]
                size = dest.source_dtype.itemsize
                raw = slot.buffer[position : position + segment.length].view(dest.source_dtype)
                first = segment.offset // size
                target = dest.tensor.view(-1)[first : first + segment.length // size]
                target.copy_(raw, non_blocking=stream is not None)


class PopulateRunner:
    """Makes a task's range of a private file mapping resident (the mapped mode's "read")."""

    def __init__(
        self,
        sources: Sequence[MappableSource],
        maps: Sequence[mmap.mmap],
        *,
        stats: LoadStats,
        verifier: PieceVerifier | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self._sources = sources
        self._maps = maps
        self._verifier = verifier
        self._stats = stats
        self._on_progress = on_progress

    def __call__(self, task: ReadTask) -> None:
        started = time.perf_counter()
        mapping = self._maps[task.file_index]
        self._sources[task.file_index].populate(mapping, task.file_offset, task.length)
        read_done = time.perf_counter()
        if self._verifier is not None:
            with memoryview(mapping) as whole:
                view = whole[task.file_offset : task.file_offset + task.length]
                self._verifier.verify(task, [view])
                view.release()
        self._stats.add(read_s=read_done - started, verify_s=time.perf_counter() - read_done)
        if self._on_progress is not None:
            self._on_progress(task.length)
