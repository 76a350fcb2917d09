"""One benchmark variant per process: ``python variants.py NAME INDEX`` prints one JSON line.

Each variant materializes every tensor in CPU memory and is timed from the call to the
last byte in place; peak RSS and anonymous/file-backed memory growth are measured
around it in this fresh process.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
REQUEST = 64 * MiB


@dataclass(frozen=True)
class Variant:
    run: Callable[[Path], object]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Timed:
    """A variant's own timing (its setup excluded) and facts to report beside it."""

    seconds: float
    facts: dict[str, object]


def drop_caches(files: list[Path]) -> str:
    """Evict the files from the page cache: drop_caches when root, else fadvise."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return "drop_caches"
    except OSError:
        for path in files:
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        return "fadvise"


def shard_files(index: Path) -> list[Path]:
    return sorted(index.parent.glob("*.safetensors"))


def raw_preadv(index: Path) -> object:
    """The machine limit: 2 threads, 64 MiB preadv into a prefaulted buffer."""
    files = shard_files(index)
    sizes = [f.stat().st_size for f in files]
    # Page-aligned private memory with every page faulted. (A bytearray here starts 16
    # bytes past a page boundary and read 1.3-2x slower: misaligned copies,
    # docs/benchmarks.md; every load's destination is 64-byte aligned.)
    view = memoryview(touched(max(sizes)))
    return parallel_preadv(_requests(files, sizes, view, [0] * len(files)))


def raw_preadv_fresh(index: Path) -> object:
    """The limit for private memory: the same reads into a fresh arena (the memory a
    private load gets: reserved huge pages when the bench reserved a pool)."""
    from pagefault.doctor.page_kind import fastest_pages
    from pagefault.tensors.memory import Arena

    files = shard_files(index)
    sizes = [f.stat().st_size for f in files]
    pages = fastest_pages()  # the kind a private load would ask for (probed outside the clock)
    started = time.perf_counter()
    arena = Arena(sum(sizes), pages)
    bases = [sum(sizes[:i]) for i in range(len(files))]
    parallel_preadv(_requests(files, sizes, arena.view(0, sum(sizes)), bases))
    return Timed(time.perf_counter() - started, {"pages": arena.pages})


def memcpy_model(index: Path) -> object:
    """One thread copying the model's size between two buffers already faulted (the
    doctor's memcpy figure, measured on the same bytes)."""
    size = sum(f.stat().st_size for f in shard_files(index))
    source, target = touched(size), touched(size)
    src = ctypes.addressof(ctypes.c_char.from_buffer(source))
    dst = ctypes.addressof(ctypes.c_char.from_buffer(target))
    started = time.perf_counter()
    ctypes.memmove(dst, src, size)
    return time.perf_counter() - started


def touched(size: int) -> mmap.mmap:
    """Private anonymous memory (what loads get, not shared tmpfs pages), every page
    written so it is faulted in."""
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(buffer)), 1, size)
    return buffer


def _requests(
    files: list[Path], sizes: list[int], view: memoryview, bases: list[int]
) -> list[tuple[Path, int, memoryview]]:
    """Each file in REQUEST pieces, file ``i`` landing at ``bases[i]`` of ``view``."""
    return [
        (f, off, view[base + off : base + off + min(REQUEST, size - off)])
        for f, size, base in zip(files, sizes, bases, strict=True)
        for off in range(0, size, REQUEST)
    ]


def parallel_preadv(jobs: list[tuple[Path, int, memoryview]]) -> float:
    """Two threads read (file, offset, destination) jobs in order; the seconds taken."""
    lock = threading.Lock()
    fds = {path: os.open(path, os.O_RDONLY) for path, _, _ in jobs}

    def worker() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                path, offset, destination = jobs.pop(0)
            os.preadv(fds[path], [destination], offset)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started  # excludes the buffers' allocation
    for fd in fds.values():
        os.close(fd)
    return seconds


def pagefault_load(mmap: bool) -> Callable[[Path], object]:
    def run(index: Path) -> object:
        import pagefault

        return pagefault.load(index, mmap=mmap)

    return run


def safetensors_clone(index: Path) -> object:
    from safetensors.torch import load_file

    out = {}
    for f in shard_files(index):
        out.update({k: v.clone() for k, v in load_file(f).items()})
    return out


def torch_load(index: Path) -> object:
    import torch

    return torch.load(torch_save_path(index), weights_only=True)


def torch_save_path(index: Path) -> Path:
    path = index.parent / "model.pt"
    if not path.exists():
        import torch

        tensors = safetensors_clone(index)
        torch.save(tensors, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
    return path


def runai(index: Path) -> object:
    from runai_model_streamer import SafetensorsStreamer

    out = {}
    with SafetensorsStreamer() as streamer:
        streamer.stream_files([str(f) for f in shard_files(index)])
        for name, tensor in streamer.get_tensors():
            out[name] = tensor.clone()  # its buffers are reused: keep a copy, as vLLM does
    return out


VARIANTS: dict[str, Variant] = {
    "raw-preadv": Variant(raw_preadv),
    "raw-preadv-fresh-memory": Variant(raw_preadv_fresh),
    "memcpy": Variant(memcpy_model),
    "pagefault-mapped": Variant(pagefault_load(True)),
    "pagefault-private": Variant(pagefault_load(False)),
    "pagefault-private-no-pool": Variant(pagefault_load(False), env={"PAGEFAULT_HUGETLB": "0"}),
    "pagefault-private-4k-pages": Variant(pagefault_load(False), env={"PAGEFAULT_HUGE_PAGES": "0"}),
    "safetensors+clone": Variant(safetensors_clone),
    "torch.load": Variant(torch_load),
    "runai-default": Variant(runai),
    "runai-sync_buffered": Variant(runai, env={"RUNAI_STREAMER_FS_STRATEGY": "sync_buffered"}),
}


def memory() -> dict[str, float]:
    """Resident MiB of this process: VmRSS, VmHWM (peak), RssAnon, RssFile + RssShmem.

    Reserved huge pages (HugetlbPages) count in none of the kernel's RSS fields, so they
    are added to VmRSS, VmHWM and RssAnon: an arena from the pool is anonymous memory.
    """
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "HugetlbPages"}:
            fields[key] = int(value.split()[0]) / 1024
    fields["file"] = fields.pop("RssFile") + fields.pop("RssShmem")
    hugetlb = fields.pop("HugetlbPages", 0.0)
    for key in ("VmRSS", "VmHWM", "RssAnon"):
        fields[key] += hugetlb
    return fields


def main() -> None:
    name, index = sys.argv[1], Path(sys.argv[2])
    if name == "torch.load":
        torch_save_path(index)  # create outside the timed region
    # Import every library before the clock starts: we time loading, not imports.
    import runai_model_streamer  # noqa: F401
    import safetensors.torch  # noqa: F401
    import torch  # noqa: F401

    import pagefault

    pagefault.load  # noqa: B018  # its modules load on first use: import them now

    size = sum(f.stat().st_size for f in shard_files(index))
    before = memory()
    started = time.perf_counter()
    result = VARIANTS[name].run(index)
    seconds = result if isinstance(result, float) else time.perf_counter() - started
    extra = {}
    if isinstance(result, Timed):  # a variant that timed itself and says more
        seconds, extra = result.seconds, result.facts
    after = memory()
    print(
        json.dumps(
            {
                "variant": name,
                "seconds": seconds,
                "bytes": size,
                "gbps": size / seconds / 1e9,
                "peak_rss_mib": after["VmHWM"] - before["VmRSS"],
                "anon_mib": after["RssAnon"] - before["RssAnon"],
                "file_mib": after["file"] - before["file"],
                **extra,
            }
        )
    )


if __name__ == "__main__":
    main()
