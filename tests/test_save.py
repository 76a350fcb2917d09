"""pagefault.save: round trips, snapshot semantics, atomic replacement, errors, policy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pagefault
from pagefault.checkpoint import SaveOptions, StagingPool, start_save
from pagefault.errors import CheckpointError, IntegrityError
from pagefault.manifest import BLAKE3, MANIFEST_NAME, SHA256, PieceManifest
from tests.checkpoint.fakes import MemoryWriter
from tests.helpers import (
    TORCH_TO_ST,
    flip_byte,
    random_tensor,
    same_bytes,
    tiny_llama_config,
    verify_manifest,
)

INDEX = "model.safetensors.index.json"


def mixed_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every dtype, odd sizes (unaligned offsets), 0-d, empty, and strided tensors."""
    tensors = {
        f"{dtype}".replace("torch.", "t_"): random_tensor(dtype, (3, 5), seed + i)
        for i, dtype in enumerate(TORCH_TO_ST)
    }
    tensors["scalar"] = torch.tensor(1.5, dtype=torch.float64)
    tensors["empty"] = torch.zeros(0, 4, dtype=torch.float16)
    tensors["transposed"] = random_tensor(torch.float32, (64, 48), seed + 99).t()
    tensors["sliced"] = random_tensor(torch.int16, (40, 40), seed + 98)[::3, 1::2]
    tensors["big"] = random_tensor(torch.bfloat16, (512, 1024), seed + 97)
    return tensors


def assert_same(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(loaded) == list(expected) or set(loaded) == set(expected)
    for name, tensor in expected.items():
        assert same_bytes(loaded[name], tensor), name


@pytest.mark.parametrize("async_", [True, False])
def test_round_trip_with_pagefault_and_safetensors(tmp_path: Path, async_: bool) -> None:
    state = mixed_state_dict()
    handle = pagefault.save(state, tmp_path / "ckpt", async_=async_, max_shard_size=300_000)
    stats = handle.wait()
    ckpt = tmp_path / "ckpt"
    shards = sorted(p.name for p in ckpt.glob("*.safetensors"))
    assert len(shards) == stats.files >= 2
    assert shards == [
        f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, 1 + len(shards))
    ]
    assert_same(pagefault.load(ckpt), state)
    from_safetensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        from_safetensors.update(load_file(ckpt / shard))
    assert_same(from_safetensors, state)
    index = json.loads((ckpt / INDEX).read_text())
    assert set(index["weight_map"]) == set(state)
    assert sorted(verify_manifest(ckpt)) == sorted([*shards, INDEX])
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no staging leftovers


def test_caller_may_modify_tensors_once_save_returns(tmp_path: Path) -> None:
    state = {f"w{i}": random_tensor(torch.float32, (256, 256), i) for i in range(8)}
    expected = {name: t.clone() for name, t in state.items()}
    handle = pagefault.save(state, tmp_path / "ckpt")
    for tensor in state.values():
        tensor.fill_(7.0)  # e.g. the optimizer step right after the save call
    handle.wait()
    assert handle.done() and handle.progress == 1.0
    assert_same(pagefault.load(tmp_path / "ckpt"), expected)


def test_synchronous_save_of_contiguous_cpu_tensors_copies_nothing(tmp_path: Path) -> None:
    state = {"a": random_tensor(torch.float16, (100, 3), 1), "b": torch.arange(5)}
    handle = pagefault.save(state, tmp_path / "ckpt", async_=False)
    assert handle.done() and handle.stats.mode == "direct" and handle.stats.buffer_wait_s == 0
    assert_same(pagefault.load(tmp_path / "ckpt"), state)


def test_progress_callback_counts_every_byte(tmp_path: Path) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def count(nbytes: int) -> None:
        with lock:
            seen.append(nbytes)

    handle = pagefault.save(mixed_state_dict(), tmp_path / "ckpt", on_progress=count)
    stats = handle.wait()
    files = sum(p.stat().st_size for p in (tmp_path / "ckpt").glob("*.safetensors"))
    assert sum(seen) == handle.total_bytes == handle.bytes_written == stats.bytes == files
    assert stats.persist_s > 0 and stats.hash_s > 0 and stats.stall_s > 0


def test_overwrite_replaces_weights_and_keeps_other_files(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    pagefault.save(mixed_state_dict(1), ckpt, max_shard_size=100_000).wait()
    old_shards = {p.name for p in ckpt.glob("*.safetensors")}
    (ckpt / "config.json").write_text('{"model_type": "x"}')
    (ckpt / "model.safetensors").write_bytes(b"stale single-file weights")
    (ckpt / "adapter_model.safetensors").write_bytes(b"not ours: kept")
    new = {"only": random_tensor(torch.float32, (10, 10), 5)}
    pagefault.save(new, ckpt).wait()
    assert sorted(os.listdir(ckpt)) == sorted(
        [
            "config.json",
            "adapter_model.safetensors",
            MANIFEST_NAME,
            INDEX,
            "model-00001-of-00001.safetensors",
        ]
    )
    assert len(old_shards) > 1
    assert (ckpt / "config.json").read_text() == '{"model_type": "x"}'
    assert_same(pagefault.load(ckpt), new)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_symlinked_destination_keeps_its_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "latest").symlink_to(tmp_path / "real", target_is_directory=True)
    state = {"w": random_tensor(torch.int32, (9, 9), 8)}
    pagefault.save(state, tmp_path / "latest").wait()
    assert (tmp_path / "latest").is_symlink()
    assert_same(pagefault.load(tmp_path / "latest"), state)
    assert sorted(os.listdir(tmp_path)) == ["latest", "real"]


def test_transformers_from_pretrained_loads_the_checkpoint(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    config = tiny_llama_config(transformers)
    model = transformers.LlamaForCausalLM(config)
    config.save_pretrained(tmp_path / "llama")  # a plain file the save must keep
    pagefault.save(model.state_dict(), tmp_path / "llama", max_shard_size=100_000).wait()
    assert len(list((tmp_path / "llama").glob("model-*.safetensors"))) > 1
    loaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "llama")
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_errors_surface_on_wait_and_the_buffer_is_returned() -> None:
    pool = StagingPool()
    state = mixed_state_dict()
    writer = MemoryWriter(fail_on="model-00002-of-")
    options = SaveOptions(max_shard_size=200_000)
    handle = start_save(state, writer, options, pool=pool)
    with pytest.raises(CheckpointError, match="No space left") as info:
        handle.wait(timeout=60)
    assert isinstance(info.value.__cause__, OSError)
    assert handle.done() and writer.aborted and writer.committed is None
    assert "failed" in repr(handle)
    assert pool.clear() > 0  # released to the pool, not leaked


def test_commit_order_puts_the_index_last() -> None:
    writer = MemoryWriter()
    start_save(mixed_state_dict(), writer, SaveOptions(), pool=StagingPool()).wait(timeout=60)
    assert writer.order == [MANIFEST_NAME, INDEX]


def test_next_save_waits_for_the_previous_under_the_default_budget() -> None:
    pool, gate = StagingPool(), threading.Event()
    state = {"w": random_tensor(torch.float32, (64, 64), 3)}
    first = start_save(state, MemoryWriter(gate=gate), SaveOptions(), pool=pool)
    result: list[object] = []
    second_writer = MemoryWriter()
    thread = threading.Thread(
        target=lambda: result.append(start_save(state, second_writer, SaveOptions(), pool=pool))
    )
    thread.start()
    deadline = time.monotonic() + 30
    while pool.waiting == 0 and time.monotonic() < deadline:
        thread.join(0.001)
    assert pool.waiting == 1 and not result and not first.done()
    gate.set()  # the first save finishes persisting and releases its buffer
    thread.join(60)
    assert first.wait(60) and result
    assert result[0].wait(60).buffer_wait_s > 0  # type: ignore[attr-defined]
    assert second_writer.committed is not None


def test_budget_for_two_snapshots_does_not_wait() -> None:
    pool, gate = StagingPool(), threading.Event()
    state = {"w": random_tensor(torch.float32, (64, 64), 3)}
    options = SaveOptions(staging_budget=2 * 64 * 64 * 4 + 2 * 8192)
    first = start_save(state, MemoryWriter(gate=gate), options, pool=pool)
    second = start_save(state, MemoryWriter(), options, pool=pool)
    assert second.wait(60) and not first.done()
    gate.set()
    first.wait(60)


def read_piece_manifest(directory: Path) -> PieceManifest:
    return PieceManifest.from_json((directory / MANIFEST_NAME).read_bytes(), name="m")


def test_blake3_manifest_by_default_catches_a_flipped_byte(tmp_path: Path) -> None:
    state = {"w": random_tensor(torch.float32, (300, 100), 5)}
    pagefault.save(state, tmp_path / "c").wait()
    shard = tmp_path / "c" / "model-00001-of-00001.safetensors"
    assert read_piece_manifest(tmp_path / "c").algorithm == BLAKE3
    assert pagefault.verify(tmp_path / "c").ok
    assert_same(pagefault.load(tmp_path / "c", verify=True), state)
    flip_byte(shard, shard.stat().st_size - 7)
    report = pagefault.verify(tmp_path / "c")
    assert not report.ok and report.bad_pieces == [(shard.name, 0)]
    with pytest.raises(IntegrityError, match="piece 0"):
        pagefault.load(tmp_path / "c", verify=True)


def test_sha256_manifest_records_the_swarm_roots(tmp_path: Path) -> None:
    pagefault.save({"a": torch.ones(3)}, tmp_path / "c", piece_hash="sha256").wait()
    manifest = read_piece_manifest(tmp_path / "c")
    assert manifest.algorithm == SHA256
    assert all(len(f.roots) == len(f.pieces) for f in manifest.files)
    assert pagefault.verify(tmp_path / "c").ok
    with pytest.raises(CheckpointError, match="piece_hash must be one of"):
        pagefault.save({"a": torch.ones(3)}, tmp_path / "d", piece_hash="md5")  # type: ignore[arg-type]


def test_without_hashing_there_is_no_manifest(tmp_path: Path) -> None:
    pagefault.save({"a": torch.ones(3)}, tmp_path / "c", hash_pieces=False).wait()
    assert sorted(os.listdir(tmp_path / "c")) == sorted([INDEX, "model-00001-of-00001.safetensors"])


def test_bad_destinations_and_inputs_fail_in_the_call(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        pagefault.save({"a": torch.ones(1)}, tmp_path / "file")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    with pytest.raises(CheckpointError, match=r"holds directories \(sub\)"):
        pagefault.save({"a": torch.ones(1)}, tmp_path / "d")
    with pytest.raises(CheckpointError, match="meta device"):
        pagefault.save({"a": torch.empty(2, device="meta")}, tmp_path / "m")
    with pytest.raises(CheckpointError, match="want str -> torch.Tensor"):
        pagefault.save({"a": [1, 2]}, tmp_path / "m")  # type: ignore[dict-item]
    with pytest.raises(CheckpointError, match="staging_budget"):
        pagefault.save({"a": torch.ones(1000)}, tmp_path / "m", staging_budget=10)
    assert sorted(os.listdir(tmp_path)) == ["d", "file"]  # nothing left behind


def test_stale_staging_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    for stale in (f".step-1.pagefault-{host}-{dead.pid}-0badc0de", f".ckpt.pagefault-{dead.pid}-1"):
        (tmp_path / stale).mkdir()  # another checkpoint's name; a name from before hosts
        (tmp_path / stale / "model-00001-of-00001.safetensors.part").write_bytes(b"torn")
    elsewhere = tmp_path / f".step-2.pagefault-other-host-{dead.pid}-2"
    elsewhere.mkdir()  # another machine sharing the filesystem: not ours to judge
    pagefault.save({"a": torch.ones(3)}, tmp_path / "ckpt").wait()
    assert sorted(os.listdir(tmp_path)) == [elsewhere.name, "ckpt"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_snapshot_is_consistent_and_pinned(tmp_path: Path) -> None:
    state = {f"w{i}": torch.randn(1024, 1024, device="cuda") for i in range(4)}
    state["strided"] = torch.randn(256, 128, device="cuda").t()
    expected = {name: t.cpu().clone() for name, t in state.items()}
    handle = pagefault.save(state, tmp_path / "ckpt")
    for tensor in state.values():
        tensor.mul_(0).add_(3)  # queued on the caller's stream after the save returned
    stats = handle.wait()
    assert stats.mode == "pinned"
    assert_same(pagefault.load(tmp_path / "ckpt"), expected)
