"""The pager: one background thread that reads groups into their memory, in request order.

Each fetch is one ordinary pipeline load of a few tensors (vectored reads straight into
slot memory on CPU; the pinned staging ring and a side stream for CUDA) over the model's
sources, which stay open between fetches. Fetches run first in, first out, so a slot can
be handed to a new group while the old group's fetch is still queued or running: the
new one starts after it. Errors are kept on the fetch and raised by whoever waits for it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from pagefault.errors import SinkError
from pagefault.pipeline import LoadOptions, Target, TensorStream, open_stream
from pagefault.sources import ResolvedModel

__all__ = ["Fetch", "Pager"]


@dataclass
class Fetch:
    """One group's read: where its tensors go, and what came of it."""

    group: int
    targets: Mapping[str, Target]
    after: torch.cuda.Event | None = None  # the slot's last compute must finish first
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    error: BaseException | None = None
    nbytes: int = 0
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)

    def wait(self) -> float:
        """Block until the bytes are in place; seconds waited. Raises the fetch's error."""
        started = time.perf_counter()
        self.done.wait()
        if self.error is not None:
            raise self.error
        return time.perf_counter() - started


class Pager:
    """Runs fetches on one thread; ``close`` stops the current one and drops the rest."""

    def __init__(self, model: ResolvedModel, options: LoadOptions) -> None:
        self._model = model
        self._options = options
        self._queue: queue.SimpleQueue[Fetch | None] = queue.SimpleQueue()
        self._current: TensorStream | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="pagefault-pager", daemon=True)
        self._thread.start()

    def submit(self, fetch: Fetch) -> Fetch:
        self._queue.put(fetch)
        return fetch

    def close(self) -> None:
        """Stop reading, wait for the thread, fail whatever was still queued."""
        with self._lock:
            self._closed = True
            if self._current is not None:
                self._current.close()
        self._queue.put(None)
        self._thread.join()
        self._model.close()

    def _run(self) -> None:
        while (fetch := self._queue.get()) is not None:
            if self._closed:
                fetch.error = _closed_error()
                fetch.done.set()
                continue
            self._read(fetch)
        while not self._queue.empty():  # after close: nothing may wait forever
            leftover = self._queue.get()
            if leftover is not None:
                leftover.error = _closed_error()
                leftover.done.set()

    def _read(self, fetch: Fetch) -> None:
        started = time.perf_counter()
        try:
            if fetch.after is not None:
                fetch.after.synchronize()
            with self._lock:
                if self._closed:
                    raise _closed_error()
                stream = open_stream(
                    self._model, self._options, targets=fetch.targets, close_model=False
                )
                self._current = stream
            with stream:
                fetch.tensors = dict(stream)
            if self._closed and len(fetch.tensors) < len(fetch.targets):
                raise _closed_error()
            fetch.nbytes = stream.stats.bytes
        except BaseException as exc:  # handed to the waiting forward, never lost
            fetch.error = exc
        finally:
            with self._lock:
                self._current = None
            fetch.seconds = time.perf_counter() - started
            fetch.done.set()


def _closed_error() -> BaseException:
    return SinkError("the paged model was closed; its weights are no longer loaded")
