"""The planner's invariants: full coverage, bounds, order, element-aligned splits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pagefault.formats import DType
from pagefault.manifest import TensorEntry
from pagefault.pipeline import plan_reads


def layout(sizes: list[tuple[int, int]]) -> list[TensorEntry]:
    """Tensors tiling files back to back; sizes are (file_index, nbytes)."""
    entries, offsets = [], {}
    for i, (file_index, nbytes) in enumerate(sorted(sizes, key=lambda s: s[0])):
        start = offsets.get(file_index, 100)
        entries.append(TensorEntry(f"t{i}", DType.U8, (nbytes,), file_index, start, start + nbytes))
        offsets[file_index] = start + nbytes
    return entries


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5000)), min_size=1, max_size=30),
    st.integers(64, 4096),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(1, 8),
    st.booleans(),
)
def test_plan_invariants(sizes, request_size, granularity, max_segments, tails) -> None:
    entries = layout(sizes)
    plan = plan_reads(
        entries,
        request_size=request_size,
        element_sizes=[granularity] * len(entries),
        max_segments=max_segments,
        tails_end_tasks=tails,
    )
    covered = [0] * len(entries)
    last_tensor = -1
    for task in plan.tasks:
        assert 0 < task.length <= max(request_size, granularity)
        assert len(task.segments) <= max_segments
        position = task.file_offset
        for seg in task.segments:
            entry = entries[seg.tensor]
            assert entry.file_index == task.file_index
            assert entry.start + seg.offset == position  # contiguous in the file
            assert seg.offset == covered[seg.tensor]  # in order, no gaps or repeats
            assert seg.tensor >= last_tensor  # consumption order
            last_tensor = seg.tensor
            remaining = entry.nbytes - seg.offset - seg.length
            if remaining:
                assert seg.length % granularity == 0 or seg.length < granularity
            covered[seg.tensor] += seg.length
            position += seg.length
    assert covered == [e.nbytes for e in entries]
    assert plan.total_bytes == sum(e.nbytes for e in entries)


def test_one_contiguous_request_for_small_tensors() -> None:
    entries = layout([(0, 10), (0, 20), (0, 30)])
    plan = plan_reads(entries, request_size=1 << 20)
    assert len(plan.tasks) == 1 and plan.tasks[0].length == 60


def test_element_larger_than_request_is_read_whole() -> None:
    entries = layout([(0, 64)])
    plan = plan_reads(entries, request_size=16, element_sizes=[32])
    assert [t.length for t in plan.tasks] == [32, 32]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5000)), min_size=1, max_size=30),
    st.integers(64, 4096),
    st.sampled_from([64, 128, 1024]),
    st.booleans(),
)
def test_piece_aligned_tasks_hold_whole_pieces(sizes, request_size, piece_size, tails) -> None:
    entries = layout(sizes)
    plan = plan_reads(
        entries, request_size=request_size, piece_size=piece_size, tails_end_tasks=tails
    )
    starts = {e.file_index: 100 for e in entries}
    ends = {}
    for e in entries:
        ends[e.file_index] = max(ends.get(e.file_index, 0), e.end)
    for task in plan.tasks:
        end = task.file_offset + task.length
        assert task.file_offset % piece_size == 0 or task.file_offset == starts[task.file_index]
        assert end % piece_size == 0 or end == ends[task.file_index]
        assert task.length <= max(request_size, piece_size)
    assert sum(t.length for t in plan.tasks) == plan.total_bytes


def test_a_split_tensors_tail_ends_its_task_when_bytes_arrive_over_time() -> None:
    """Streaming from a swarm: the first tensor (2,000 bytes over requests of 1,500) is
    handed out when its own bytes are here, not when the next 1,500 are too."""
    entries = layout([(0, 2000), (0, 10), (0, 3000)])
    whole = plan_reads(entries, request_size=1500)
    assert [t.length for t in whole.tasks] == [1500, 1500, 1500, 510]
    tails = plan_reads(entries, request_size=1500, tails_end_tasks=True)
    assert [t.length for t in tails.tasks] == [1500, 500, 1500, 1500, 10]
    pieces = plan_reads(entries, request_size=1500, piece_size=256, tails_end_tasks=True)
    # to the piece boundary after the tail (100 + 2,000 -> 2,304): the small tensor joins
    assert [t.file_offset + t.length for t in pieces.tasks[:2]] == [1536, 2304]
