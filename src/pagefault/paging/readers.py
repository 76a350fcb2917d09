"""How the pager brings a group's tensors in: two readers behind one small interface.

* ``StreamReader``: one pipeline load per group (slot memory, conversions, remote and
  cached sources, verification, CUDA staging).
* ``MappedReader``: local files on CPU, zero-copy. Each file is mapped once; a group is
  made resident by populating its byte ranges and released by dropping them again, so
  the process holds only the groups the budget allows while the page cache keeps the
  bytes. The mappings ask for huge pages: pages a fault reads in then arrive as 2 MiB
  folios mapped by one PMD each, and putting a 946 MB shard back took 0.8-0.9 ms against
  2.4-4 ms without the advice and 40 ms per 512 MB for pages ``read()`` had cached (small
  folios). A pipeline load per group costs 2.4 ms of threads and planning on the 2-vCPU
  VM (hot, 90 MB layer) where populating the range costs 0.2-0.7 ms, and with compute
  on both CPUs that overhead is paid on every layer of every token.
"""

from __future__ import annotations

import mmap
import threading
import time
from collections.abc import Sequence

from pagefault.manifest import TensorEntry
from pagefault.pipeline import LoadOptions, TensorStream, open_stream
from pagefault.pipeline.mapped import mapped_tensors
from pagefault.pipeline.plan import LoadPlan, plan_reads
from pagefault.sources import MappableSource, PageCacheSource, ResolvedModel
from pagefault.system.mapping import MADV_HUGEPAGE, buffer_address, drop_pages, madvise

from .pager import Fetch, closed_error

__all__ = ["MappedReader", "StreamReader", "advised_mappings"]


class StreamReader:
    """Pipeline loads over sources that stay open between them; a batch is one load."""

    def __init__(self, model: ResolvedModel, options: LoadOptions) -> None:
        self._model = model
        self._options = options
        self._lock = threading.Lock()
        self._current: TensorStream | None = None
        self._cancelled = False

    def read_batch(self, fetches: list[Fetch]) -> None:
        owner = {name: fetch for fetch in fetches for name in fetch.names}
        waiting = {id(fetch): len(fetch.names) for fetch in fetches}
        targets = {k: v for fetch in fetches for k, v in (fetch.targets or {}).items()}
        started = time.perf_counter()
        with self._lock:
            if self._cancelled:
                raise closed_error()
            self._current = open_stream(
                self._model,
                self._options,
                targets=targets or None,
                only=list(owner),
                close_model=False,
            )
        try:
            _done_if_complete(fetches, waiting, started)  # a group with no tensors
            with self._current as stream:
                for name, tensor in stream:
                    fetch = owner[name]
                    fetch.tensors[name] = tensor
                    fetch.nbytes += self._model.manifest.tensor(name).nbytes
                    waiting[id(fetch)] -= 1
                    _done_if_complete([fetch], waiting, started)
        finally:
            with self._lock:
                self._current = None
        if any(waiting.values()):
            raise closed_error()  # closed part-way

    def release(self, fetch: Fetch) -> None:
        """Slots are reused and fresh memory goes with its last tensor: nothing to do."""

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._current is not None:
                self._current.close()


def _done_if_complete(fetches: list[Fetch], waiting: dict[int, int], started: float) -> None:
    for fetch in fetches:
        if not waiting[id(fetch)] and not fetch.done.is_set():
            fetch.seconds = time.perf_counter() - started
            fetch.done.set()


class MappedReader:
    """Views of private file mappings, populated per group and dropped on release."""

    def __init__(self, model: ResolvedModel) -> None:
        self._sources = [s for s in model.sources if isinstance(s, MappableSource)]
        self._maps = advised_mappings(self._sources)
        self._manifest = model.manifest
        self._groups: dict[tuple[str, ...], tuple[list[TensorEntry], LoadPlan]] = {}
        self._cancelled = False

    def read_batch(self, fetches: list[Fetch]) -> None:
        for fetch in fetches:
            started = time.perf_counter()
            self._read(fetch)
            fetch.seconds = time.perf_counter() - started
            fetch.done.set()

    def _read(self, fetch: Fetch) -> None:
        if self._cancelled:
            raise closed_error()
        entries, plan = self._group(fetch.names)
        for task in plan.tasks:
            source = self._sources[task.file_index]
            if isinstance(source, PageCacheSource):  # cold: the disk gets the whole group at once
                source.prefetch(task.file_offset, task.length)
        for task in plan.tasks:
            source = self._sources[task.file_index]
            source.populate(self._maps[task.file_index], task.file_offset, task.length)
        views = mapped_tensors(self._maps, entries)
        fetch.tensors = {e.name: t for e, t in zip(entries, views, strict=True)}
        fetch.nbytes = plan.total_bytes

    def release(self, fetch: Fetch) -> None:
        for task in self._group(fetch.names)[1].tasks:
            drop_pages(self._maps[task.file_index], task.file_offset, task.length)

    def cancel(self) -> None:
        """No more reads; the mappings go with the last tensor viewing them."""
        self._cancelled = True
        self._maps = []

    def _group(self, names: tuple[str, ...]) -> tuple[list[TensorEntry], LoadPlan]:
        """A group's entries (file order) and their contiguous runs, worked out once: a
        group is read and dropped again on every forward."""
        found = self._groups.get(names)
        if found is None:
            wanted = set(names)
            entries = [e for e in self._manifest.tensors if e.name in wanted]
            size = max(1, sum(e.nbytes for e in entries))
            found = self._groups[names] = (entries, plan_reads(entries, request_size=size))
        return found


def advised_mappings(sources: Sequence[MappableSource]) -> list[mmap.mmap]:
    """A private mapping of each file, advised huge pages: pages a fault reads in then
    arrive as 2 MiB folios, each mapped by one PMD."""
    mappings = [source.map_private() for source in sources]
    for mapping in mappings:
        madvise(buffer_address(mapping), len(mapping), MADV_HUGEPAGE)
    return mappings
