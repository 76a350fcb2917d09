"""Low-level memory mapping: addresses of mappings, madvise, populating, fixed file maps.

ctypes calls release the GIL, so I/O threads can fault pages in parallel.
"""

from __future__ import annotations

import ctypes
import errno
import mmap

from pagefault.system.libc import LIBC

__all__ = [
    "MADV_HUGEPAGE",
    "MADV_NOHUGEPAGE",
    "PAGE",
    "buffer_address",
    "drop_pages",
    "madvise",
    "map_file_fixed",
    "populate_read",
    "populate_write",
]

PAGE = mmap.PAGESIZE
MADV_DONTNEED = 4
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_POPULATE_READ = 22  # Linux 5.14+: fault pages in without touching them from Python
MADV_POPULATE_WRITE = 23  # Linux 5.14+: ... writable (fresh memory: allocated and zeroed)
_MAP_FAILED = ctypes.c_void_p(-1).value

_libc = LIBC
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.mmap.restype = ctypes.c_void_p


def buffer_address(buf: mmap.mmap) -> int:
    """Address of a writable mapping's first byte."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))


def madvise(address: int, length: int, advice: int) -> bool:
    """madvise() through ctypes, which releases the GIL; False when the kernel declines."""
    start = address - address % PAGE
    result: int = _libc.madvise(start, length + (address - start), advice)
    return result == 0


def populate_read(buf: mmap.mmap, address: int, offset: int, length: int) -> None:
    """Make ``[offset, offset + length)`` of a mapping resident without copying it.

    Raises ``OSError(EFAULT)`` where the range lies past the end of a file that shrank
    since it was mapped: touching those pages would kill the process with SIGBUS.
    """
    if length and not madvise(address + offset, length, MADV_POPULATE_READ):
        if ctypes.get_errno() == errno.EFAULT:
            raise OSError(errno.EFAULT, "the mapped file shrank: the range is past its end")
        # Older kernels: touch one byte per page (reads only, so nothing is copied).
        view = memoryview(buf)[offset : offset + length]
        for page in range(0, length, PAGE):
            view[page]


def drop_pages(buf: mmap.mmap, offset: int, length: int) -> None:
    """Unmap the whole pages inside ``[offset, offset + length)`` of a private file mapping.

    Our resident set shrinks; the page cache keeps the bytes, and a later touch maps
    them again. Pages straddling the range's ends stay (a neighbour may be using them).
    """
    start = offset + (-offset % PAGE)
    end = (offset + length) - (offset + length) % PAGE
    if end > start:
        madvise(buffer_address(buf) + start, end - start, MADV_DONTNEED)


def populate_write(view: memoryview) -> bool:
    """Fault a writable view's fresh pages in, in one call, before a read fills them.

    A ``preadv`` into fresh memory takes one page fault per page inside the copy; asking
    the kernel to populate the range first does the same allocation and zeroing without
    the per-page exception: 1.04-1.34x faster fills of 4 KiB pages on the development VM
    (docs/benchmarks.md). False on kernels before 5.14 (the read faults them as before).
    """
    if not len(view):
        return True
    address = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return madvise(address, len(view), MADV_POPULATE_WRITE)


def map_file_fixed(address: int, length: int, fd: int) -> None:
    """Map ``length`` bytes of ``fd`` copy-on-write over ``[address, address + length)``.

    The range must lie inside a mapping the caller owns (an anonymous ``mmap.mmap``):
    MAP_FIXED replaces those pages, and unmapping the owner later unmaps these too.
    """
    flags = mmap.MAP_PRIVATE | 0x10  # MAP_FIXED
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    result = _libc.mmap(address, length, prot, flags, fd, 0)
    if result in (None, _MAP_FAILED) or result != address:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mmap(MAP_FIXED) of {length} bytes failed")
