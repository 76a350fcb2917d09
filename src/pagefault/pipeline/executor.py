"""Run read tasks on a bounded thread pool and tell the consumer when tensors complete.

Threads are the measured default for file I/O: ``preadv`` and ``madvise`` release the
GIL. Workers take tasks in plan order, so bytes arrive roughly in consumption order and
the consumer can hand out tensor *i* while later tasks are still in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from pagefault.pipeline.plan import ReadTask

__all__ = ["CompletionTracker", "ParallelExecutor"]


class CompletionTracker:
    """Counts outstanding bytes per tensor; ``wait`` blocks until a tensor is complete."""

    def __init__(self, tensor_bytes: Sequence[int]) -> None:
        self._remaining = list(tensor_bytes)
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    def mark_done(self, task: ReadTask) -> None:
        with self._cond:
            for segment in task.segments:
                self._remaining[segment.tensor] -= segment.length
            self._cond.notify_all()

    def fail(self, error: BaseException) -> None:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()

    def wait(self, tensor: int) -> float:
        """Block until ``tensor`` is complete; re-raise a worker's error. Returns seconds waited."""
        started = time.perf_counter()
        with self._cond:
            while self._remaining[tensor] > 0 and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
        return time.perf_counter() - started


class ParallelExecutor:
    """``threads`` workers run ``run_task`` over ``tasks`` in order; first error stops all."""

    def __init__(
        self,
        tasks: Sequence[ReadTask],
        run_task: Callable[[ReadTask], None],
        *,
        threads: int,
        tracker: CompletionTracker,
    ) -> None:
        self._tasks = tasks
        self._run_task = run_task
        self._tracker = tracker
        self._next = 0
        self._lock = threading.Lock()
        self._stopped = False
        self._workers = [
            threading.Thread(target=self._work, name=f"pagefault-io-{i}", daemon=True)
            for i in range(max(1, min(threads, len(tasks))))
        ]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def cancel(self) -> None:
        """Stop handing out tasks; tasks already running finish."""
        with self._lock:
            self._stopped = True

    def join(self) -> None:
        """Wait for the workers, then let go of the runner: it holds the destinations'
        views, which would keep a finished load's memory from being recycled."""
        for worker in self._workers:
            if worker.is_alive():
                worker.join()
        self._run_task = _finished

    def _take(self) -> ReadTask | None:
        with self._lock:
            if self._stopped or self._next >= len(self._tasks):
                return None
            task = self._tasks[self._next]
            self._next += 1
            return task

    def _work(self) -> None:
        while (task := self._take()) is not None:
            try:
                self._run_task(task)
            except BaseException as exc:  # handed to the consumer, which re-raises it
                self.cancel()
                self._tracker.fail(exc)
                return
            self._tracker.mark_done(task)


def _finished(task: ReadTask) -> None:
    """The runner of an executor whose workers are done: nothing is left to run."""
    raise RuntimeError(f"{task} after the load finished")
