"""Round trips against safetensors in every mode, every dtype, odd shapes and layouts."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import pagefault
from tests.helpers import TORCH_TO_ST, random_tensor, same_bytes, write_tensors

MODES = [
    pytest.param({}, id="auto"),
    pytest.param({"mmap": True}, id="mapped"),
    pytest.param({"mmap": False}, id="private"),
    pytest.param({"mmap": False, "threads": 1, "request_size": 4096}, id="private-small-requests"),
]


def reference(path: Path) -> dict[str, torch.Tensor]:
    files = sorted(glob.glob(str(path.parent / "*.safetensors"))) if path.is_file() else []
    out: dict[str, torch.Tensor] = {}
    for f in files or [str(path)]:
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("options", MODES)
def test_every_dtype_and_odd_shape_round_trips(tmp_path: Path, options: dict) -> None:
    tensors = {}
    for i, dtype in enumerate(TORCH_TO_ST):
        if dtype != torch.float4_e2m1fn_x2:  # one F4 value is half a byte: no scalars
            tensors[f"{dtype}-scalar"] = random_tensor(dtype, (), i)
        tensors[f"{dtype}-empty"] = random_tensor(dtype, (0, 3), i)
        tensors[f"{dtype}-odd"] = random_tensor(dtype, (3, 5, 7), i)
        tensors[f"{dtype}-tall"] = random_tensor(dtype, (4099, 1), i)
    path = tmp_path / "all.safetensors"
    save_file(tensors, path, metadata={"format": "pt"})
    loaded = pagefault.load(path, **options)
    expected = load_file(path)
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert same_bytes(loaded[name], tensor), name


@pytest.mark.parametrize("options", MODES)
def test_unaligned_offsets(tmp_path: Path, options: dict) -> None:
    tensors = {
        "flags": random_tensor(torch.bool, (3,), 1),
        "weights": random_tensor(torch.float32, (5, 3), 2),
        "byte": random_tensor(torch.uint8, (1,), 3),
        "half": random_tensor(torch.bfloat16, (7,), 4),
        "double": random_tensor(torch.float64, (2, 2), 5),
    }
    path = write_tensors(tmp_path / "unaligned.safetensors", tensors)
    info = pagefault.inspect(path)
    assert info.tensor("weights").start % 4 != 0  # really unaligned
    loaded = pagefault.load(path, **options)
    for name, tensor in tensors.items():
        assert same_bytes(loaded[name], tensor), name
        assert loaded[name].data_ptr() % loaded[name].element_size() == 0, name


@pytest.mark.parametrize("options", MODES)
def test_sharded_index_and_directory(sharded_checkpoint: Path, options: dict) -> None:
    expected = reference(sharded_checkpoint)
    for source in (sharded_checkpoint, sharded_checkpoint.parent, str(sharded_checkpoint)):
        loaded = pagefault.load(source, **options)
        assert list(loaded) == [t.name for t in pagefault.inspect(source).tensors]
        assert loaded.keys() == expected.keys()
        assert all(same_bytes(loaded[k], v) for k, v in expected.items())


def test_dtype_conversion_matches_torch(sharded_checkpoint: Path) -> None:
    expected = reference(sharded_checkpoint)
    for limit in (None, 2 << 20):
        loaded = pagefault.load(sharded_checkpoint, dtype=torch.float16, memory_limit=limit)
        for name, tensor in expected.items():
            assert same_bytes(loaded[name], tensor.to(torch.float16)), name


def test_dtype_conversion_leaves_integers_alone(tmp_path: Path) -> None:
    tensors = {"ids": torch.arange(10, dtype=torch.int64), "w": torch.randn(4, dtype=torch.float32)}
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, path)
    loaded = pagefault.load(path, dtype=torch.bfloat16)
    assert loaded["ids"].dtype == torch.int64 and torch.equal(loaded["ids"], tensors["ids"])
    assert same_bytes(loaded["w"], tensors["w"].to(torch.bfloat16))


def test_mapped_tensors_are_copy_on_write(single_checkpoint: Path) -> None:
    before = single_checkpoint.read_bytes()
    loaded = pagefault.load(single_checkpoint, mmap=True)
    for tensor in loaded.values():
        tensor.zero_()
    assert single_checkpoint.read_bytes() == before
    assert all(
        same_bytes(a, b)
        for a, b in zip(
            pagefault.load(single_checkpoint).values(),
            load_file(single_checkpoint).values(),
            strict=True,
        )
    )


def test_tensors_keep_their_memory_alive(single_checkpoint: Path) -> None:
    for mmap in (True, False):
        loaded = pagefault.load(single_checkpoint, mmap=mmap)
        kept = next(iter(loaded.values()))
        copy = kept.clone()
        del loaded
        assert torch.equal(kept, copy)


def test_stats_describe_the_load(sharded_checkpoint: Path) -> None:
    stream = pagefault.stream(sharded_checkpoint, mmap=False, threads=2)
    list(stream)
    info = pagefault.inspect(sharded_checkpoint)
    assert stream.stats.bytes == info.total_bytes
    assert stream.stats.tensors == len(info.tensors)
    assert stream.stats.files == 3 and stream.stats.mode == "private"
    assert stream.stats.seconds > 0 and stream.stats.read_s > 0 and stream.stats.gbps > 0


def test_progress_callback_counts_every_byte(sharded_checkpoint: Path) -> None:
    for mmap in (True, False):
        seen: list[int] = []
        pagefault.load(sharded_checkpoint, mmap=mmap, on_progress=seen.append)
        assert sum(seen) == pagefault.inspect(sharded_checkpoint).total_bytes


def test_errors(tmp_path: Path, single_checkpoint: Path) -> None:
    with pytest.raises(pagefault.NotFound):
        pagefault.load(tmp_path / "missing.safetensors")
    with pytest.raises(pagefault.NotFound, match="no .safetensors"):
        pagefault.load(tmp_path)
    with pytest.raises(pagefault.SinkError, match="mmap=True"):
        pagefault.load(single_checkpoint, mmap=True, dtype=torch.float16)
    with pytest.raises(pagefault.SinkError, match="unknown device"):
        pagefault.load(single_checkpoint, device="warp-drive")
    with pytest.raises(pagefault.ConfigError, match="threads"):
        pagefault.load(single_checkpoint, threads=0)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(pagefault.FormatError, match="bad.safetensors"):
        pagefault.load(bad)


def test_truncated_while_loading_raises_source_error(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(1 << 20), "b": torch.ones(1 << 20)}, path)
    stream = pagefault.stream(path, mmap=False, threads=1, request_size=4096)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(pagefault.SourceError, match="end of file"):
        list(stream)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available: CPU-only torch")
def test_cuda_load_matches_cpu(sharded_checkpoint: Path) -> None:
    expected = reference(sharded_checkpoint)
    for limit in (None, 4 << 20):
        loaded = pagefault.load(sharded_checkpoint, device="cuda", memory_limit=limit)
        for name, tensor in expected.items():
            assert loaded[name].device.type == "cuda"
            assert same_bytes(loaded[name].cpu(), tensor), name
    loaded = pagefault.load(sharded_checkpoint, device="cuda:0", dtype=torch.float16)
    assert all(same_bytes(loaded[k].cpu(), v.to(torch.float16)) for k, v in expected.items())


def test_cuda_without_cuda_is_a_clear_error(single_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available; this checks the CPU-only error")
    with pytest.raises(pagefault.SinkError, match="cuda"):
        pagefault.load(single_checkpoint, device="cuda")
