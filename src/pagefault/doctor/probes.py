"""Measurements of this node, made the way the benchmarks make them.

Each returns GB/s (10^9 bytes per second) for one path bytes take in a load: a read of
page-cached bytes into memory already faulted (the read limit, bench/load_bench.py's
``raw-preadv``), the same read into fresh memory of each page kind (what a private load
pays), memcpy, tmpfs writes, hashing, and reads of a directory or a URI. Two threads
read 64 MiB requests, as the benchmark's limit does. No torch: the doctor runs in the
CLI's light process.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import mmap
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import blake3

from pagefault.pieces.engine import map_pieces
from pagefault.system.anonymous import HUGE_PAGE, aligned_mapping, pool_mapping
from pagefault.system.mapping import buffer_address

__all__ = [
    "PAGE_KINDS",
    "cold_read",
    "direct_read",
    "fresh_fill",
    "hash_rates",
    "hot_read",
    "hot_sample",
    "memcpy_rate",
    "shm_write",
]

REQUEST = 64 << 20
THREADS = 2
_O_DIRECT = getattr(os, "O_DIRECT", 0)
# what backs fresh memory, by the names LoadStats.pages uses
PAGE_KINDS = ("small-pages", "huge-pages", "hugetlb-pool")


@contextlib.contextmanager
def hot_sample(size: int, directory: Path | None = None) -> Iterator[Path]:
    """A ``size``-byte file (in ``directory``, default the temp directory) whose pages
    the page cache holds, removed after the block. One random MiB repeated: hashing and
    copies see real bytes."""
    block = os.urandom(1 << 20)
    fd, name = tempfile.mkstemp(prefix=".pagefault-doctor-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            for _ in range(size >> 20):
                f.write(block)
        yield Path(name)
    finally:
        os.unlink(name)


def hot_read(files: Sequence[Path]) -> float:
    """Page-cached ``files`` into memory already faulted (one buffer the size of the
    largest, reused): the read limit, one pass, as the benchmark's ``raw-preadv``."""
    total = sum(f.stat().st_size for f in files)
    target = _touched(max(f.stat().st_size for f in files))
    return total / _seconds(lambda: _read_all(files, memoryview(target))) / 1e9


def fresh_fill(files: Sequence[Path], kind: str) -> float | None:
    """Page-cached ``files`` into one fresh mapping backed by ``kind`` (:data:`PAGE_KINDS`),
    mapping and faults included, as a private load pays them; None when this node
    cannot give that kind (no pool room, huge pages declined)."""
    total = sum(f.stat().st_size for f in files)
    started = time.perf_counter()
    mapping = _fresh_mapping(total, kind)
    if mapping is None:
        return None
    target, base = mapping
    view, at = memoryview(target), base
    for f in files:
        size = f.stat().st_size
        _read_file(f, view[at : at + size])
        at += size
    seconds = time.perf_counter() - started
    view.release()
    target.close()
    return total / seconds / 1e9


def memcpy_rate(size: int) -> float:
    """One thread copying between two buffers already faulted (the median of 3 passes)."""
    source, target = _touched(size), _touched(size)
    src = buffer_address(source)
    dst = buffer_address(target)
    passes = sorted(_seconds(lambda: ctypes.memmove(dst, src, size)) for _ in range(3))
    return size / passes[1] / 1e9


def shm_write(size: int, directory: Path = Path("/dev/shm")) -> float | None:
    """Writing to tmpfs (the RAM tier's medium); None without a writable /dev/shm."""
    if not os.access(directory, os.W_OK):
        return None
    block = bytes(REQUEST)
    fd, name = tempfile.mkstemp(prefix=".pagefault-doctor-", dir=directory)
    try:
        with os.fdopen(fd, "wb", buffering=0) as f:
            return _rate(size, lambda: [f.write(block) for _ in range(size // REQUEST)])
    finally:
        os.unlink(name)


def hash_rates(size: int = 256 << 20) -> dict[str, float]:
    """One thread's SHA-256 and BLAKE3 over ``size`` bytes (the digests manifests use)."""
    data = os.urandom(1 << 20) * (size >> 20)
    return {
        "sha256": _rate(size, lambda: hashlib.sha256(data).digest()),
        "blake3": _rate(size, lambda: blake3.blake3(data).digest()),
    }


def cold_read(files: Sequence[Path], *, direct: bool = False) -> float | None:
    """``files`` read after the page cache dropped them (buffered), or with O_DIRECT;
    None when the kernel kept the pages or the file system refuses O_DIRECT."""
    total = sum(f.stat().st_size for f in files)
    if total == 0:
        return None
    for f in files:
        _drop_cached(f)
    target = _touched(min(max(f.stat().st_size for f in files), 1 << 30) + HUGE_PAGE)
    try:
        started = time.perf_counter()
        for f in files:
            _read_file(f, memoryview(target), direct)
        seconds = time.perf_counter() - started
    except OSError:
        return None
    return total / seconds / 1e9


def direct_read(files: Sequence[Path]) -> float | None:
    """O_DIRECT reads (no page cache): what a cold load gets without the kernel's copy."""
    return cold_read(files, direct=True) if _O_DIRECT else None


def _read_all(files: Sequence[Path], view: memoryview) -> None:
    for f in files:
        _read_file(f, view)


def _read_file(path: Path, view: memoryview, direct: bool = False) -> None:
    """``THREADS`` threads read ``path`` in ``REQUEST`` pieces into ``view`` (wrapping
    around when the view is smaller than the file: only the rate matters)."""
    fd = os.open(path, os.O_RDONLY | (_O_DIRECT if direct else 0))
    try:
        size = os.fstat(fd).st_size
        span = len(view) - len(view) % REQUEST or len(view)

        def read(offset: int) -> None:
            length = min(REQUEST, size - offset)
            if direct:  # whole blocks only: round the tail up
                length = -(-length // 4096) * 4096
            at = offset % span
            os.preadv(fd, [view[at : at + min(length, len(view) - at)]], offset)

        map_pieces(read, range(0, size, REQUEST), threads=THREADS, name="doctor-read")
    finally:
        os.close(fd)


def _fresh_mapping(size: int, kind: str) -> tuple[mmap.mmap, int] | None:
    """A fresh mapping of ``kind``, as the arena makes it, and the offset of its first
    2 MiB boundary; None when this node cannot give that kind now."""
    if kind == "hugetlb-pool":
        pooled = pool_mapping(size)
        return (pooled, 0) if pooled is not None else None
    mapping, base, huge = aligned_mapping(size, kind == "huge-pages")
    if kind == "huge-pages" and not huge:
        mapping.close()
        return None
    return mapping, base


def _drop_cached(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _touched(size: int) -> mmap.mmap:
    """Private anonymous memory (what loads get; ``mmap.mmap(-1, n)`` alone would be
    shared, i.e. tmpfs pages, which copy at another speed) with every page faulted in."""
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    ctypes.memset(buffer_address(buf), 1, size)
    return buf


def _seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _rate(size: int, work: Callable[[], object]) -> float:
    return size / _seconds(work) / 1e9
