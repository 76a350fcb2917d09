"""Plan a load: tensors → contiguous file ranges → read tasks, in consumption order.

Pure: no I/O, no torch. Safetensors tiles each file's data section with tensors, so
consecutive tensors of a file form one contiguous range that a single vectored read
can scatter into many destinations. A task is at most ``request_size`` bytes and
``max_segments`` destinations; a tensor split across tasks is split on element
boundaries so each piece can be converted or copied on its own. With ``piece_size``
(verified loads), tasks also start and end on piece boundaries, so each task can be
checked against the piece manifest on its own. With ``tails_end_tasks`` (sources that
fill over time), the task holding the tail of a tensor split across tasks ends there (at
the next piece boundary): the tensor is handed out once its own bytes are here, not once
the next tensors' bytes are too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pagefault.errors import ConfigError
from pagefault.manifest import TensorEntry

__all__ = ["LoadPlan", "ReadTask", "Segment", "plan_reads"]

DEFAULT_MAX_SEGMENTS = 1024  # Linux IOV_MAX


@dataclass(frozen=True)
class Segment:
    """Bytes ``[offset, offset + length)`` of tensor number ``tensor``."""

    tensor: int
    offset: int
    length: int


@dataclass(frozen=True)
class ReadTask:
    """One contiguous read of file ``file_index`` scattered into ``segments`` in order."""

    file_index: int
    file_offset: int
    segments: tuple[Segment, ...]

    @property
    def length(self) -> int:
        return sum(segment.length for segment in self.segments)


@dataclass(frozen=True)
class LoadPlan:
    """Read tasks in consumption order, and each tensor's byte count."""

    tasks: tuple[ReadTask, ...]
    tensor_bytes: tuple[int, ...]
    request_size: int

    @property
    def total_bytes(self) -> int:
        return sum(self.tensor_bytes)


def plan_reads(
    tensors: Sequence[TensorEntry],
    *,
    request_size: int,
    element_sizes: Sequence[int] | None = None,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    piece_size: int | None = None,
    tails_end_tasks: bool = False,
) -> LoadPlan:
    """Split ``tensors`` (in consumption order) into read tasks of at most ``request_size``.

    ``element_sizes[i]`` is the byte granularity at which tensor ``i`` may be split
    (its item size when it will be converted; 1 when any split is fine). With
    ``piece_size``, a task holds whole pieces where it can: it ends on a multiple of
    ``piece_size``, at most ``request_size`` on from its start (or one piece if that is more).
    """
    if request_size <= 0 or max_segments <= 0 or (piece_size is not None and piece_size <= 0):
        raise ConfigError("request_size, max_segments and piece_size must be positive")
    sizes = element_sizes or [1] * len(tensors)
    builder = _TaskBuilder(request_size, max_segments, piece_size, tails_end_tasks)
    for index, tensor in enumerate(tensors):
        builder.add_tensor(index, tensor, max(1, sizes[index]))
    builder.flush()
    return LoadPlan(
        tasks=tuple(builder.tasks),
        tensor_bytes=tuple(t.nbytes for t in tensors),
        request_size=request_size,
    )


class _TaskBuilder:
    """Accumulates segments into the current task and cuts tasks at the limits."""

    def __init__(
        self, request_size: int, max_segments: int, piece_size: int | None, tails_end_tasks: bool
    ) -> None:
        self.request_size = request_size
        self.max_segments = max_segments
        self.piece_size = piece_size
        self.tails_end_tasks = tails_end_tasks
        self.tasks: list[ReadTask] = []
        self._cut: int | None = None  # where the current task must end (a split tensor's tail)
        self._segments: list[Segment] = []
        self._file = -1
        self._start = 0
        self._length = 0

    def add_tensor(self, index: int, tensor: TensorEntry, granularity: int) -> None:
        if tensor.file_index != self._file or tensor.start != self._start + self._length:
            self.flush()
            self._file, self._start = tensor.file_index, tensor.start
        done = 0
        while done < tensor.nbytes:
            room = self._room()
            take = min(tensor.nbytes - done, room)
            if take < tensor.nbytes - done:
                take -= take % granularity
            if take <= 0 and self._segments:
                self.flush()
                self._start = tensor.start + done
                continue
            # An element larger than a whole request still has to be read in one piece.
            take = max(take, min(granularity, tensor.nbytes - done))
            self._segments.append(Segment(index, done, take))
            self._length += take
            done += take
            if self._room() <= 0 or len(self._segments) >= self.max_segments:
                self.flush()
                self._start = tensor.start + done
        if self.tails_end_tasks and self._segments and self._start > tensor.start:
            self._cut = self._piece_end(tensor.end) if self.piece_size else tensor.end

    def _room(self) -> int:
        """Bytes the current task may still take before it must end."""
        end = self._start + self.request_size
        if self.piece_size is not None:
            boundary = end - end % self.piece_size
            end = boundary if boundary > self._start else self._piece_end(self._start + 1)
        if self._cut is not None:
            end = min(end, self._cut)
        return end - self._start - self._length

    def _piece_end(self, offset: int) -> int:
        """The first piece boundary at or after ``offset``."""
        assert self.piece_size is not None
        return -(-offset // self.piece_size) * self.piece_size

    def flush(self) -> None:
        if self._segments:
            self.tasks.append(ReadTask(self._file, self._start, tuple(self._segments)))
        self._segments = []
        self._cut = None
        self._length = 0
