"""Take a consistent copy of a state dict's bytes, laid out exactly as the shard files.

``stage`` copies every tensor into a staging buffer, once, as fast as memory allows:
contiguous CPU tensors are cut into 16 MiB ``memmove`` calls spread over a few threads
(ctypes releases the GIL; on the development VM two threads copy at up to ~10 GB/s
where ``Tensor.copy_`` reached ~5). Afterwards the caller may modify its tensors.

CUDA tensors are copied device→host into pinned memory on a side stream that first
waits for the caller's stream; the caller's stream then waits for those copies, so
kernels it queues later (an optimizer step) cannot overwrite a tensor mid-copy, and
the persister blocks on the copies' event before it reads the buffer.

``direct`` is for synchronous saves of contiguous CPU tensors: no copy at all, the
writers read the tensors' own memory while the caller waits.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from pagefault.checkpoint.buffers import HostBuffer
from pagefault.checkpoint.plan import SavePlan
from pagefault.errors import CheckpointError, SinkError
from pagefault.formats import TensorSpec
from pagefault.tensors.dtypes import file_shape, from_torch_dtype
from pagefault.tensors.memory import tensor_bytes

__all__ = ["Snapshot", "can_write_directly", "direct", "parallel_memmove", "specs_of", "stage"]

_MOVE_PIECE = 16 * 1024 * 1024


def _nothing_to_wait_for() -> None:
    return None


@dataclass
class Snapshot:
    """Per shard, views whose concatenation is the file's bytes; ``ready`` blocks until valid."""

    files: list[list[memoryview]]
    ready: Callable[[], None] = _nothing_to_wait_for
    buffer: HostBuffer | None = None
    keep: tuple[torch.Tensor, ...] = field(default=())  # memory the views point into


def specs_of(state_dict: Mapping[str, torch.Tensor]) -> tuple[list[TensorSpec], list[torch.Tensor]]:
    """Validate a state dict; return its specs and detached tensors, in its order."""
    specs, tensors = [], []
    for name, tensor in state_dict.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"state dict entry {name!r}: want str -> torch.Tensor, got {type(tensor).__name__}"
            )
        if tensor.is_meta:
            raise CheckpointError(f"tensor {name!r} is on the meta device: it has no data to save")
        try:
            dtype = from_torch_dtype(tensor.dtype, tensor=name)
        except SinkError as exc:
            raise CheckpointError(str(exc)) from exc
        specs.append(TensorSpec(name, dtype, file_shape(tensor)))
        tensors.append(tensor.detach())
    return specs, tensors


def can_write_directly(tensors: Sequence[torch.Tensor]) -> bool:
    """True when every tensor is contiguous CPU memory the writers can read as it is."""
    return all(t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def direct(plan: SavePlan, tensors: Sequence[torch.Tensor]) -> Snapshot:
    """Views of the tensors' own memory (the caller must not modify them until persisted)."""
    files: list[list[memoryview]] = []
    position = 0
    for shard in plan.shards:
        views = [memoryview(shard.header)]
        for tensor in tensors[position : position + len(shard.specs)]:
            if tensor.numel():
                views.append(tensor_bytes(tensor))
        position += len(shard.specs)
        files.append(views)
    return Snapshot(files, keep=tuple(tensors))


def stage(
    plan: SavePlan, tensors: Sequence[torch.Tensor], buffer: HostBuffer, *, threads: int = 2
) -> Snapshot:
    """Copy headers and tensors into ``buffer``; return once the caller may modify them."""
    for shard in plan.shards:
        buffer.view(shard.buffer_offset, len(shard.header))[:] = shard.header
    pending: dict[torch.device, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    moves: list[tuple[int, int, int]] = []
    with torch.no_grad():
        for (offset, nbytes), tensor in zip(plan.placements(), tensors, strict=True):
            if not nbytes:
                continue
            region = buffer.region(offset, nbytes)
            if tensor.device.type == "cuda":
                pending.setdefault(tensor.device, []).append((region, tensor))
            elif tensor.device.type == "cpu" and tensor.is_contiguous():
                moves.append((region.data_ptr(), tensor.data_ptr(), nbytes))
            else:
                _copy_host(region, tensor.cpu())
        waits = [_copy_from_cuda(device, pairs) for device, pairs in pending.items()]
        parallel_memmove(moves, threads=threads)
    files = [[buffer.view(s.buffer_offset, s.size)] for s in plan.shards]
    return Snapshot(files, ready=_wait_all(waits), buffer=buffer)


def parallel_memmove(moves: Sequence[tuple[int, int, int]], *, threads: int) -> None:
    """Run ``memmove(dst, src, n)`` jobs, cut into pieces, on ``threads`` threads."""
    pieces = [
        (dst + at, src + at, min(_MOVE_PIECE, n - at))
        for dst, src, n in moves
        for at in range(0, n, _MOVE_PIECE)
    ]
    if threads <= 1 or len(pieces) <= 1:
        _memmove_all(pieces)
        return
    groups = [pieces[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads, thread_name_prefix="pagefault-snapshot") as pool:
        for future in [pool.submit(_memmove_all, group) for group in groups]:
            future.result()


def _memmove_all(pieces: Sequence[tuple[int, int, int]]) -> None:
    for dst, src, n in pieces:
        ctypes.memmove(dst, src, n)


def _copy_host(region: torch.Tensor, tensor: torch.Tensor) -> None:
    """Copy a CPU tensor's bytes into ``region`` (uint8), strided tensors included."""
    if tensor.is_contiguous():
        region.copy_(tensor.reshape(-1).view(torch.uint8))
    elif region.data_ptr() % tensor.element_size() == 0:
        region.view(tensor.dtype).view(tensor.shape).copy_(tensor)
    else:  # a strided tensor at an unaligned file offset: one temporary copy
        region.copy_(tensor.contiguous().reshape(-1).view(torch.uint8))


def _copy_from_cuda(
    device: torch.device, pairs: list[tuple[torch.Tensor, torch.Tensor]]
) -> Callable[[], None]:
    """Queue device→host copies into pinned regions; return a wait for their completion."""
    caller = torch.cuda.current_stream(device)
    side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
    side.wait_stream(caller)  # the tensors' pending writes finish before we read them
    with torch.cuda.stream(side):
        for region, tensor in pairs:
            source = tensor if tensor.is_contiguous() else tensor.contiguous()
            region.copy_(source.reshape(-1).view(torch.uint8), non_blocking=True)
            tensor.record_stream(side)  # freed memory is not reused before the copy ran
    done = torch.cuda.Event()  # type: ignore[no-untyped-call]
    done.record(side)
    caller.wait_event(done)  # later writes on the caller's stream wait for the copies
    return done.synchronize


def _wait_all(waits: list[Callable[[], None]]) -> Callable[[], None]:
    if not waits:
        return _nothing_to_wait_for

    def wait() -> None:
        for item in waits:
            item()

    return wait
