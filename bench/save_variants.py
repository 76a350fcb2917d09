"""One save-benchmark variant per process: ``python save_variants.py NAME INDEX OUT`` → JSON.

The process first loads the checkpoint at INDEX into private CPU memory (the state
dict to save), then times one way of saving it under OUT (a fresh directory on the
disk being measured). Two times per variant:

* ``stall_s``  — from the call until the caller may touch its tensors again;
* ``durable_s`` — from the call until the bytes are on disk (fsync done).

``memcpy`` and ``raw-write`` are the hardware limits the acceptance ratios use.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

MiB = 1024 * 1024
REQUEST = 64 * MiB
PIECE = 16 * MiB
ROUNDS = 3


def drop_caches() -> None:
    os.sync()
    with contextlib.suppress(OSError):  # not root: the page cache keeps what it has
        Path("/proc/sys/vm/drop_caches").write_text("1\n")


def fsync_tree(path: Path) -> float:
    """fsync every file under ``path`` (for writers that do not); return the seconds."""
    started = time.perf_counter()
    for file in [path] if path.is_file() else sorted(path.rglob("*")):
        if file.is_file():
            fd = os.open(file, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
    return time.perf_counter() - started


def byte_views(state: dict[str, torch.Tensor]) -> list[memoryview]:
    from pagefault.tensors.memory import tensor_bytes

    return [tensor_bytes(t) for t in state.values() if t.numel()]


def memcpy(state: dict[str, torch.Tensor], out: Path) -> dict:
    """The stall limit: memmove into a prefaulted buffer, 16 MiB pieces, 1 or 2 threads, best."""
    target = prefaulted_like(state)
    best = {
        threads: min(memcpy_once(state, target, threads) for _ in range(3)) for threads in (1, 2)
    }
    return {"stall_s": min(best.values()), "durable_s": None, "memcpy_1t_s": best[1]}


def prefaulted_like(state: dict[str, torch.Tensor]) -> torch.Tensor:
    total = sum(t.numel() * t.element_size() for t in state.values())
    target = torch.empty(total, dtype=torch.uint8)
    target.fill_(1)  # fault every page in before timing
    return target


def memcpy_once(state: dict[str, torch.Tensor], target: torch.Tensor, threads: int) -> float:
    pieces, at = [], target.data_ptr()
    for t in state.values():
        n = t.numel() * t.element_size()
        pieces += [(at + o, t.data_ptr() + o, min(PIECE, n - o)) for o in range(0, n, PIECE)]
        at += n

    def run(group: list[tuple[int, int, int]]) -> None:
        for dst, src, n in group:
            ctypes.memmove(dst, src, n)

    workers = [threading.Thread(target=run, args=(pieces[i::threads],)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def raw_write(state: dict[str, torch.Tensor], out: Path) -> dict:
    """The persistence limit: the same bytes, sequential 64 MiB writes to one new file, fsync."""
    seconds = raw_write_once(state, out)
    return {"stall_s": seconds, "durable_s": seconds}


def raw_write_once(state: dict[str, torch.Tensor], out: Path) -> float:
    out.mkdir(parents=True)
    started = time.perf_counter()
    fd = os.open(out / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    for view in byte_views(state):
        for at in range(0, view.nbytes, REQUEST):
            chunk = view[at : at + REQUEST]
            while chunk.nbytes:
                chunk = chunk[os.write(fd, chunk) :]
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - started


def raw_write_direct(state: dict[str, torch.Tensor], out: Path) -> dict:
    """The device limit: the same bytes from a page-aligned buffer with O_DIRECT, then fsync."""
    seconds = raw_write_direct_once(aligned_copy(state), out)
    return {"stall_s": seconds, "durable_s": seconds}


def aligned_copy(state: dict[str, torch.Tensor]) -> memoryview:
    """The state dict's bytes, back to back, in a page-aligned huge-page arena."""
    from pagefault.tensors.memory import Arena

    total = sum(t.numel() * t.element_size() for t in state.values())
    arena = Arena(total)
    memcpy_once(state, arena.tensor(0, torch.uint8, (total,)), 2)
    return arena.view(0, total)  # the view keeps the mapping alive


def raw_write_direct_once(view: memoryview, out: Path) -> float:
    out.mkdir(parents=True)
    whole = view.nbytes - view.nbytes % 4096
    started = time.perf_counter()
    fd = os.open(out / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    offset = 0
    while offset < whole:
        offset += os.pwrite(fd, view[offset : min(offset + REQUEST, whole)], offset)
    os.close(fd)
    with open(out / "raw.bin", "ab") as tail:  # the last partial block, buffered
        tail.write(view[whole:])
        tail.flush()
        os.fsync(tail.fileno())
    return time.perf_counter() - started


def pagefault_save(**kwargs: object) -> Callable[[dict, Path], dict]:
    """A first save (allocates the buffer), then ROUNDS of [raw writes, memcpy, save].

    The limits are re-measured in this process right before each steady save, so
    the ratios do not depend on what else the (shared) machine did between processes.
    """

    def run(state: dict[str, torch.Tensor], out: Path) -> dict:
        import pagefault

        first = _timed_save(pagefault, state, out / "first", kwargs)
        shutil.rmtree(out / "first")
        target = prefaulted_like(state)
        aligned = aligned_copy(state)
        rounds = []
        for _ in range(ROUNDS):
            drop_caches()
            buffered = raw_write_once(state, out / "raw")
            shutil.rmtree(out / "raw")
            drop_caches()
            direct = raw_write_direct_once(aligned, out / "raw")
            shutil.rmtree(out / "raw")
            raw = min(buffered, direct)  # the faster of the two is the disk's limit
            drop_caches()
            # The stall limit right before the save, so both see the same machine.
            limit = min(memcpy_once(state, target, threads) for threads in (1, 2))
            save = _timed_save(pagefault, state, out / "steady", kwargs)
            shutil.rmtree(out / "steady")
            rounds.append(
                {"memcpy_s": limit, "raw_write_s": raw, "raw_buffered_s": buffered, **save}
            )
        best = min(rounds, key=lambda r: r["stall_s"])
        return {
            **best,
            "persist_s": min(r["persist_s"] for r in rounds),
            "memcpy_s": min(r["memcpy_s"] for r in rounds),
            "raw_write_s": min(r["raw_write_s"] for r in rounds),
            "stall_ratios": [round(r["stall_s"] / r["memcpy_s"], 3) for r in rounds],
            "persist_ratios": [round(r["raw_write_s"] / r["persist_s"], 3) for r in rounds],
            "first_stall_s": first["stall_s"],
            "first_durable_s": first["durable_s"],
        }

    return run


def _timed_save(pagefault: object, state: dict, dest: Path, kwargs: dict) -> dict:
    started = time.perf_counter()
    handle = pagefault.save(state, dest, **kwargs)  # type: ignore[attr-defined]
    stall = time.perf_counter() - started
    stats = handle.wait()
    durable = time.perf_counter() - started
    return {
        "stall_s": stall,
        "durable_s": durable,
        "persist_s": stats.persist_s,
        "snapshot_s": stats.snapshot_s,
        "hash_s": stats.hash_s,
        "write_s": stats.write_s,
        "mode": stats.mode,
    }


def pagefault_sync(state: dict[str, torch.Tensor], out: Path) -> dict:
    import pagefault

    started = time.perf_counter()
    pagefault.save(state, out / "sync", async_=False)
    seconds = time.perf_counter() - started
    return {"stall_s": seconds, "durable_s": seconds}


def torch_save(state: dict[str, torch.Tensor], out: Path) -> dict:
    out.mkdir(parents=True)
    started = time.perf_counter()
    torch.save(state, out / "model.pt")
    stall = time.perf_counter() - started
    return {"stall_s": stall, "durable_s": stall + fsync_tree(out)}


def safetensors_save(state: dict[str, torch.Tensor], out: Path) -> dict:
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    started = time.perf_counter()
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    stall = time.perf_counter() - started
    return {"stall_s": stall, "durable_s": stall + fsync_tree(out)}


def dcp_async_save(state: dict[str, torch.Tensor], out: Path) -> dict:
    """torch.distributed.checkpoint.async_save, single process (no_dist=True, no group)."""
    import warnings

    import torch.distributed.checkpoint as dcp

    warnings.simplefilter("ignore")  # "torch.distributed is disabled ... single process"
    started = time.perf_counter()
    future = dcp.async_save(state, checkpoint_id=str(out / "dcp"), no_dist=True)
    stall = time.perf_counter() - started
    future.result()
    return {"stall_s": stall, "durable_s": time.perf_counter() - started}


VARIANTS: dict[str, Callable[[dict, Path], dict]] = {
    "memcpy": memcpy,
    "raw-write": raw_write,
    "raw-write-direct": raw_write_direct,
    "pagefault-async": pagefault_save(),  # BLAKE3 piece manifest, the default
    "pagefault-async-sha256": pagefault_save(piece_hash="sha256"),
    "pagefault-async-nohash": pagefault_save(hash_pieces=False),
    "pagefault-sync": pagefault_sync,
    "torch.save": torch_save,
    "safetensors.save_file": safetensors_save,
    "dcp.async_save": dcp_async_save,
}


def main() -> None:
    name, index, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    import pagefault  # imports before the clock, as in the load benchmark

    state = pagefault.load(index, mmap=False)  # private anonymous memory, like training
    size = sum(t.numel() * t.element_size() for t in state.values())
    drop_caches()
    result = VARIANTS[name](state, out)
    print(json.dumps({"variant": name, "bytes": size, **result}))


if __name__ == "__main__":
    main()
