"""Fresh anonymous memory of a chosen page kind: the reserved huge-page pool, or a
2 MiB-aligned private mapping advised for transparent huge pages or for 4 KiB pages.

One place for both the loader's arena and the doctor's probes, so the doctor measures
exactly the memory a private load gets.
"""

from __future__ import annotations

import mmap

from pagefault.system.hugetlb import pool_page_size, pool_room
from pagefault.system.mapping import MADV_HUGEPAGE, MADV_NOHUGEPAGE, buffer_address, madvise

__all__ = ["HUGE_PAGE", "aligned_mapping", "pool_mapping"]

HUGE_PAGE = 2 * 1024 * 1024
_MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)  # Python < 3.13 lacks the constant


def pool_mapping(size: int) -> mmap.mmap | None:
    """A mapping of reserved huge pages when the pool has room for ``size``, else None.

    Without ``MAP_NORESERVE`` the kernel reserves every page at mmap time (ENOMEM when
    another process took them first), so no later fault can fail for want of a page.
    The one exception is a child after fork(): a write's copy-on-write needs a spare
    pool page, and without one the child loses the page (README, "Reserved huge pages").
    """
    page = pool_page_size()
    if page == 0 or size == 0:
        return None
    length = -(-size // page) * page  # munmap of hugetlb memory takes whole pages
    if pool_room() < length:
        return None
    try:
        return mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_HUGETLB)
    except OSError:
        return None


def aligned_mapping(size: int, huge: bool) -> tuple[mmap.mmap, int, bool]:
    """An anonymous mapping, the offset of its first 2 MiB boundary, and whether the
    kernel took the huge-page advice for ``size`` bytes from there (``huge``; else the
    mapping asks for small pages, even where THP is "always"). ``OSError`` or
    ``OverflowError`` when the mapping cannot be made."""
    mapping = mmap.mmap(-1, max(size, 1) + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    address = buffer_address(mapping)
    base = -address % HUGE_PAGE
    if not huge:
        madvise(address + base, size, MADV_NOHUGEPAGE)
        return mapping, base, False
    return mapping, base, madvise(address + base, size, MADV_HUGEPAGE)
