"""The pager: one background thread that brings groups in, in request order.

Fetches run first in, first out, so a slot can be handed to a new group while the old
group's fetch is still queued or running: the new one starts after it. Errors are kept
on the fetch and raised by whoever waits for it. How a fetch reads is its reader's
business (``readers.py``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from pagefault.errors import SinkError
from pagefault.pipeline import Target
from pagefault.sources import ResolvedModel

__all__ = ["Fetch", "GroupReader", "Pager", "closed_error"]


@dataclass
class Fetch:
    """One group's read: which tensors, where they go, and what came of it."""

    group: int
    names: tuple[str, ...]  # in the order they are wanted
    targets: Mapping[str, Target] | None = None  # None: memory of the reader's choosing
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


class GroupReader(Protocol):
    """Reads fetches on the pager's thread; ``release`` runs on the caller's."""

    def read_batch(self, fetches: list[Fetch]) -> None:
        """Fill each fetch's ``tensors`` and ``nbytes`` and set its ``done`` as soon as it
        is complete, in order, or raise (the pager fails those not done)."""
        ...

    def release(self, fetch: Fetch) -> None:
        """The fetch's tensors are no longer used: give their memory back if it is ours."""
        ...

    def cancel(self) -> None:
        """Stop the read under way (called from another thread); later reads raise."""
        ...


def closed_error() -> SinkError:
    return SinkError("the paged model was closed; its weights are no longer loaded")


class Pager:
    """Runs fetches on one thread; ``close`` stops the current one and fails the rest."""

    def __init__(self, model: ResolvedModel, reader: GroupReader) -> None:
        self._model = model
        self.reader = reader
        self._queue: queue.SimpleQueue[list[Fetch] | Callable[[], None] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pagefault-pager", daemon=True)
        self._thread.start()

    def submit(self, *fetches: Fetch) -> None:
        """Queue fetches to be read as one batch (one load for a whole model: its read-ahead
        and threads span every group), each done as soon as its own tensors are."""
        self._queue.put(list(fetches))

    def release(self, fetch: Fetch) -> None:
        """Give a dropped fetch's memory back: now, or right after it lands if in flight."""
        if fetch.done.is_set():
            self.reader.release(fetch)
        else:
            self._queue.put(lambda: self.reader.release(fetch))

    def close(self) -> None:
        """Stop reading, wait for the thread, close the model's sources."""
        self._closed = True
        self.reader.cancel()
        self._queue.put(None)
        self._thread.join()
        self._model.close()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, list):
                self._read(item)
            elif not self._closed:
                item()
        while not self._queue.empty():  # after close: nothing may wait forever
            leftover = self._queue.get()
            if isinstance(leftover, list):
                _fail(leftover, closed_error())

    def _read(self, batch: list[Fetch]) -> None:
        started = time.perf_counter()
        try:
            if self._closed:
                raise closed_error()
            for fetch in batch:
                if fetch.after is not None:
                    fetch.after.synchronize()
            self.reader.read_batch(batch)
        except BaseException as exc:  # handed to the waiting forward, never lost
            _fail(batch, exc)
        finally:
            for fetch in batch:
                if not fetch.done.is_set():
                    fetch.seconds = time.perf_counter() - started
                    fetch.done.set()


def _fail(batch: list[Fetch], error: BaseException) -> None:
    for fetch in batch:
        if not fetch.done.is_set():
            fetch.error = error
            fetch.done.set()
