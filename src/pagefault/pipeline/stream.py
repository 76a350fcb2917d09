"""The consumer side of a load: hand out tensors in order as soon as each is complete."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import torch

from pagefault import metrics
from pagefault.pipeline.executor import CompletionTracker, ParallelExecutor
from pagefault.pipeline.stats import LoadStats

__all__ = ["TensorStream"]


class TensorStream(Iterator[tuple[str, torch.Tensor]]):
    """Iterator of ``(name, tensor)`` in file order; ``stats`` is complete after the last one.

    Closing it early (``close()``, ``with``, or dropping it) stops the remaining reads.
    """

    def __init__(
        self,
        names: Sequence[str],
        tensors: Sequence[torch.Tensor],
        *,
        tracker: CompletionTracker,
        executor: ParallelExecutor,
        stats: LoadStats,
        on_close: Callable[[], None],
        copy_stream: torch.cuda.Stream | None = None,
    ) -> None:
        self.stats = stats
        self._names = names
        self._tensors = tensors
        self._tracker = tracker
        self._executor = executor
        self._on_close = on_close
        self._copy_stream = copy_stream
        self._next = 0
        self._closed = False
        self._started = time.perf_counter()

    def __iter__(self) -> TensorStream:
        return self

    def __next__(self) -> tuple[str, torch.Tensor]:
        if self._closed:
            raise StopIteration
        if self._next >= len(self._names):
            self._finish()
            raise StopIteration
        index = self._next
        try:
            self.stats.wait_s += self._tracker.wait(index)
        except BaseException:
            self.close()
            raise
        self._next += 1
        tensor = self._tensors[index]
        if self._copy_stream is not None:
            # The caller's stream must not read the tensor before its copies land.
            torch.cuda.current_stream(tensor.device).wait_stream(self._copy_stream)
        return self._names[index], tensor

    def close(self) -> None:
        """Stop reading, wait for in-flight reads, release sources. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.cancel()
        self._executor.join()
        self._on_close()
        self._tensors = ()  # the caller has them: a finished stream keeps no memory alive

    def _finish(self) -> None:
        if self._closed:
            return
        self._executor.join()
        if self._copy_stream is not None:
            self._copy_stream.synchronize()
        self.stats.seconds = time.perf_counter() - self._started
        self.close()
        stats = self.stats
        metrics.record_load(
            mode=stats.mode,
            pages=stats.pages,
            device=stats.device,
            bytes_by_source=stats.bytes_by_source,
            stage_seconds={
                "load": stats.seconds,
                "read": stats.read_s,
                "verify": stats.verify_s,
                "copy": stats.copy_s,
                "stall": stats.stall_s,
                "wait": stats.wait_s,
            },
            corrupt_pieces=stats.corrupt_pieces,
        )

    def __enter__(self) -> TensorStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self.close()
