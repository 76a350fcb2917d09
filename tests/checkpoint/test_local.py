"""ShardFile: page-aligned chunks go out with O_DIRECT, everything else buffered; same bytes."""

from __future__ import annotations

from pathlib import Path

import torch

from pagefault.checkpoint.local import ShardFile, _direct_length
from pagefault.tensors.memory import Arena, tensor_bytes

PAGE = 4096


_KEEP: list[torch.Tensor] = []  # the views below do not own their memory


def aligned_bytes(n: int, seed: int) -> memoryview:
    tensor = Arena(n).tensor(0, torch.uint8, (n,))
    _KEEP.append(tensor)
    tensor.copy_(
        torch.randint(
            0, 256, (n,), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
        )
    )
    return tensor_bytes(tensor)


def test_direct_length_needs_aligned_offset_address_and_size() -> None:
    view = aligned_bytes(3 * PAGE + 100, 1)
    assert _direct_length(view, 0) == 3 * PAGE
    assert _direct_length(view, 512) == 0  # file offset not page aligned
    assert _direct_length(view[1:], 0) == 0  # memory not page aligned
    assert _direct_length(memoryview(bytes(2 * PAGE)), 0) == 0  # read-only: buffered
    assert _direct_length(view[:100], 0) == 0


def test_mixed_chunks_write_the_exact_bytes(tmp_path: Path) -> None:
    big = aligned_bytes(8 * PAGE + 123, 2)
    chunks = [big[: 4 * PAGE], big[4 * PAGE :], memoryview(b"header-like tail"), big[5:900]]
    with ShardFile(tmp_path / "f") as out:
        for chunk in chunks:
            out.write(chunk)
        out.sync()
    assert (tmp_path / "f").read_bytes() == b"".join(bytes(c) for c in chunks)
