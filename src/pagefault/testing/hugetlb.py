"""Reserve the node's huge-page pool for a test or benchmark, and give it back after.

What an administrator does once per node (``sysctl vm.nr_hugepages``; on Kubernetes the
kubelet's ``hugepages-2Mi``), done here for the length of a ``with`` block. Needs root.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pagefault.system.hugetlb import pool_page_size
from pagefault.tensors.memory import Arena

__all__ = ["reserved_pool", "touch_pool"]

_NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")


@contextmanager
def reserved_pool(nbytes: int, sysctl: Path = _NR_HUGEPAGES) -> Iterator[int]:
    """Grow the pool by enough pages for ``nbytes``; yields the bytes the kernel added.

    The kernel may add fewer pages than asked when memory is fragmented: the caller
    decides whether that is enough. ``OSError`` (e.g. ``PermissionError``) when the
    pool cannot be changed. The old size is written back on exit; pages still mapped
    then return to the free lists when their last user unmaps them.
    """
    page = pool_page_size()
    if page == 0:
        raise OSError("this kernel has no huge-page pool (no Hugepagesize in /proc/meminfo)")
    before = int(sysctl.read_text())
    sysctl.write_text(str(before + -(-nbytes // page)))
    try:
        yield (int(sysctl.read_text()) - before) * page
    finally:
        sysctl.write_text(str(before))


def touch_pool(nbytes: int) -> float:
    """Fault ``nbytes`` of the pool in once and give it back; the seconds that took.

    On a VM, a page the guest has never touched may still cost a host fault: the first
    load after the pool is reserved pays that once, later loads reuse backed pages.
    """
    started = time.perf_counter()
    arena = Arena(nbytes)
    if not arena.pooled:
        raise OSError(f"the huge-page pool has no room for {nbytes} bytes")
    view = arena.view(0, nbytes)
    for offset in range(0, nbytes, pool_page_size()):
        view[offset] = 1
    del view, arena
    return time.perf_counter() - started
