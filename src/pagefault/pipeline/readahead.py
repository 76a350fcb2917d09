"""Keep the disk busy: ask the kernel for the plan's next file ranges before the workers
read them.

A worker reading a cold range into fresh memory alternates between waiting on the disk
and faulting pages in while it copies; a worker populating a cold mapping waits on one
read-around window (8 MiB here) at a time. With one worker per CPU the disk sits idle
in between. Read-ahead hints (``posix_fadvise`` WILLNEED) for the ranges that come next
fill those spells. The hints must run far ahead: a cold private load of 4.27 GB took
2.34 s with them unbounded, 3.04 s without them and 3.44 s with them kept within 512 MiB
of the workers (medians of 8 rounds, docs/benchmarks.md), where the disk serves hints
and workers' reads at nearby offsets in turn; a cold mapped load took 1.4-2.4 s with
them, 2.1-2.9 s without. So the lead is half of the memory the kernel has available,
which keeps a model larger than the page cache from evicting hinted bytes before the
workers get to them. Cached ranges are not hinted (``LocalFileSource.prefetch``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from pagefault.pipeline.plan import ReadTask
from pagefault.sources import PageCacheSource, Source
from pagefault.system.machine import meminfo_fields

__all__ = ["ReadAhead", "default_lead"]

_FALLBACK_LEAD = 1 << 30  # where /proc/meminfo cannot be read

_log = logging.getLogger("pagefault.load")


def default_lead() -> int:
    """Half of ``MemAvailable``: what the page cache can take without evicting hints."""
    available_kb = meminfo_fields().get("MemAvailable")
    return _FALLBACK_LEAD if available_kb is None else available_kb * 1024 // 2


class ReadAhead:
    """A thread that hints ``tasks``' ranges in order, at most ``lead`` bytes (default:
    :func:`default_lead`) ahead of :meth:`consumed`; sources that are not
    :class:`PageCacheSource` are skipped."""

    def __init__(
        self,
        sources: Sequence[Source],
        tasks: Sequence[ReadTask],
        *,
        lead: int | None = None,
    ) -> None:
        # Once per source: a Protocol isinstance check costs ~70 us.
        page_cache = {i: s for i, s in enumerate(sources) if isinstance(s, PageCacheSource)}
        self._hints = [
            (page_cache[task.file_index], task.file_offset, task.length)
            for task in tasks
            if task.file_index in page_cache
        ]
        self._lead = default_lead() if lead is None else lead
        self._consumed = 0
        self._stopped = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="pagefault-readahead", daemon=True)

    @property
    def wanted(self) -> bool:
        """Whether any range can be hinted at all (else there is no thread to start)."""
        return bool(self._hints)

    def start(self) -> ReadAhead:
        if self.wanted:
            self._thread.start()
        return self

    def consumed(self, nbytes: int) -> None:
        """The workers finished ``nbytes`` more: the hints may run that much further."""
        with self._changed:
            self._consumed += nbytes
            self._changed.notify()

    def stop(self) -> None:
        """Stop hinting and wait for the thread: call before the sources close."""
        with self._changed:
            self._stopped = True
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        hinted = 0
        for source, offset, length in self._hints:
            with self._changed:
                while not self._stopped and hinted - self._consumed >= self._lead:
                    self._changed.wait()
                if self._stopped:
                    return
            try:
                source.prefetch(offset, length)
            except OSError as exc:  # a hint: the workers read the bytes regardless
                _log.debug("read-ahead of %s stopped: %s", source.name, exc)
                return
            hinted += length
