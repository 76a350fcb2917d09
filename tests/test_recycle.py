"""``pagefault.recycle``: a model swap loads into the memory the old model faulted, and
never while any tensor of the old model is still alive."""

from __future__ import annotations

import gc
from pathlib import Path

import torch

import pagefault
from pagefault.tensors.recycle import release_recycled


def _load(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    stream = pagefault.stream(path, mmap=False)
    tensors = dict(stream)
    return tensors, stream.stats.pages


def test_a_swap_reuses_the_old_models_memory(sharded_checkpoint: Path) -> None:
    release_recycled()
    first, pages = _load(sharded_checkpoint)
    assert pages != "reused"
    expected = {name: t.clone() for name, t in first.items()}
    address = min(t.data_ptr() for t in first.values() if t.numel())
    assert pagefault.recycle(first) > 0
    del first
    gc.collect()
    second, pages = _load(sharded_checkpoint)
    assert pages == "reused"
    assert min(t.data_ptr() for t in second.values() if t.numel()) == address
    for name, tensor in second.items():
        assert torch.equal(tensor, expected[name]), name


def test_memory_still_viewed_by_a_tensor_is_never_reused(sharded_checkpoint: Path) -> None:
    release_recycled()
    first, _ = _load(sharded_checkpoint)
    kept = next(t for t in first.values() if t.numel() > 4)[:4]  # a view outlives the dict
    before = kept.clone()
    pagefault.recycle(first)
    del first
    gc.collect()
    second, pages = _load(sharded_checkpoint)
    assert pages != "reused"
    assert torch.equal(kept, before)
    del kept
    gc.collect()
    pagefault.recycle(second)
    del second
    gc.collect()
    _, pages = _load(sharded_checkpoint)
    assert pages == "reused"  # the first arena's view is gone now, and so is the second's


def test_release_gives_the_memory_back(sharded_checkpoint: Path) -> None:
    release_recycled()
    first, _ = _load(sharded_checkpoint)
    pagefault.recycle(first)
    del first
    pagefault.release_recycled()
    gc.collect()
    _, pages = _load(sharded_checkpoint)
    assert pages != "reused"


def test_a_finished_stream_still_referenced_does_not_hold_the_memory(
    sharded_checkpoint: Path,
) -> None:
    release_recycled()
    stream = pagefault.stream(sharded_checkpoint, mmap=False)
    first = dict(stream)
    pagefault.recycle(first)
    del first
    gc.collect()
    again = pagefault.stream(sharded_checkpoint, mmap=False)  # `stream` is still alive
    dict(again)
    assert again.stats.pages == "reused" and stream.stats.pages != "reused"
