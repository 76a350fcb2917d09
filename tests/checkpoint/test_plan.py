"""The save planner is pure: shard split, file layout, staging layout, work units."""

from __future__ import annotations

import itertools
import json
import struct

import pytest

from pagefault.checkpoint.plan import (
    BUFFER_ALIGNMENT,
    INDEX_NAME,
    plan_save,
    plan_units,
    shard_name,
)
from pagefault.errors import CheckpointError
from pagefault.formats import DType, TensorSpec, parse_header, parse_index

MiB = 1 << 20


def specs(*sizes: int) -> list[TensorSpec]:
    return [TensorSpec(f"t{i}", DType.U8, (n,)) for i, n in enumerate(sizes)]


def test_greedy_split_like_huggingface() -> None:
    plan = plan_save(specs(40, 40, 30, 100, 10), max_shard_size=100)
    groups = [[s.name for s in shard.specs] for shard in plan.shards]
    # 40+40 fit, +30 would exceed; 30 alone; 100 alone (exactly the limit); 10.
    assert groups == [["t0", "t1"], ["t2"], ["t3"], ["t4"]]
    assert [s.name for s in plan.shards] == [shard_name(i, 4) for i in range(1, 5)]
    assert shard_name(2, 12) == "model-00002-of-00012.safetensors"


def test_tensor_larger_than_limit_gets_its_own_shard() -> None:
    plan = plan_save(specs(10, 500, 10), max_shard_size=100)
    assert [len(s.specs) for s in plan.shards] == [1, 1, 1]


def test_headers_are_valid_and_carry_format_pt() -> None:
    plan = plan_save(specs(3, 5, 0), max_shard_size=1 << 30, metadata={"step": "7"})
    (shard,) = plan.shards
    length = struct.unpack("<Q", shard.header[:8])[0]
    header = parse_header(shard.header[8:], file_size=shard.size, name="x")
    assert 8 + length == len(shard.header) and len(shard.header) % 8 == 0
    assert header.metadata == {"format": "pt", "step": "7"}
    assert shard.tensor_offsets() == [len(shard.header), len(shard.header) + 3, shard.size]
    assert shard.size == len(shard.header) + 8


def test_index_maps_every_tensor_and_counts_tensor_bytes() -> None:
    plan = plan_save(specs(40, 40, 30), max_shard_size=100)
    index = parse_index(plan.index_json(), name=INDEX_NAME)
    assert dict(index.weight_map) == {
        "t0": shard_name(1, 2),
        "t1": shard_name(1, 2),
        "t2": shard_name(2, 2),
    }
    assert json.loads(plan.index_json())["metadata"]["total_size"] == 110 == plan.tensor_bytes


def test_staging_layout_is_aligned_and_disjoint() -> None:
    plan = plan_save(specs(5000, 7000, 3), max_shard_size=6000)
    regions = [(s.buffer_offset, s.buffer_offset + s.size) for s in plan.shards]
    assert all(start % BUFFER_ALIGNMENT == 0 for start, _ in regions)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(regions))
    assert plan.buffer_bytes >= regions[-1][1]
    placements = plan.placements()
    assert [n for _, n in placements] == [5000, 7000, 3]
    shard = plan.shards[1]
    assert placements[1][0] == shard.buffer_offset + len(shard.header)


def test_units_cover_every_byte_once_in_whole_pieces() -> None:
    plan = plan_save(specs(5 * MiB, 1 * MiB, 9 * MiB + 1), max_shard_size=6 * MiB)
    units = plan_units(plan, request_size=4 * MiB + 5, piece_size=1 * MiB)
    for index, shard in enumerate(plan.shards):
        mine = [u for u in units if u.shard == index]
        assert mine[0].start == 0 and mine[-1].end == shard.size
        assert all(a.end == b.start for a, b in itertools.pairwise(mine))
        assert all(u.start % MiB == 0 for u in mine)
        assert all(u.end - u.start <= 4 * MiB for u in mine)
    # Interleaved: the first units belong to different shards, so all shards progress.
    assert [u.shard for u in units[: len(plan.shards)]] == list(range(len(plan.shards)))


def test_rejects_empty_and_bad_limits() -> None:
    with pytest.raises(CheckpointError, match="empty"):
        plan_save([])
    with pytest.raises(CheckpointError, match="max_shard_size"):
        plan_save(specs(1), max_shard_size=0)
    with pytest.raises(CheckpointError, match="twice"):
        plan_save([TensorSpec("a", DType.U8, (1,)), TensorSpec("a", DType.U8, (1,))])
    with pytest.raises(CheckpointError, match="whole bytes"):
        plan_save([TensorSpec("a", DType.F4, (3,))])
