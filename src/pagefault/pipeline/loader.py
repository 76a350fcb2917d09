"""Wire a resolved model to a sink: choose the mode, plan, start the workers, stream out.

Modes (``LoadOptions.mmap``; None chooses):

* ``mapped``  – CPU, no dtype conversion, every file local: tensors view a private
  copy-on-write mapping of the file, made resident before they are handed out.
  Chosen automatically when possible: zero copies, pages shared with the page cache.
* ``private`` – CPU: one huge-page arena, file ranges read straight into it.
  Used for ``mmap=False``, ``dtype=`` conversion (through the staging ring), and
  sources that cannot be mapped.
* ``device``  – CUDA (or another device): a pinned staging ring and a side stream.

Verification (``LoadOptions.verify``; None chooses): every piece is checked against the
published piece manifest before its tensors are handed out. Automatic for remote
models that publish one; ``True`` demands a manifest, also for local files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from pagefault.errors import NotFound, SinkError
from pagefault.manifest import MANIFEST_NAME, TensorEntry
from pagefault.pipeline.destinations import (
    ARENA_ALIGNMENT,
    Destination,
    arena_destinations,
    device_destinations,
    existing_destination,
    target_dtype,
)
from pagefault.pipeline.executor import CompletionTracker, ParallelExecutor
from pagefault.pipeline.mapped import mapped_tensors
from pagefault.pipeline.plan import ReadTask, plan_reads
from pagefault.pipeline.readahead import ReadAhead
from pagefault.pipeline.runners import PopulateRunner, ReadRunner
from pagefault.pipeline.staging import StagingRing
from pagefault.pipeline.stats import LoadStats
from pagefault.pipeline.stream import TensorStream
from pagefault.pipeline.tuning import (
    MIN_SLOT_BYTES,
    STREAMING_REQUEST_SIZE,
    STREAMING_THREADS,
    auto_tuning,
)
from pagefault.pipeline.verify import PieceVerifier
from pagefault.sources import MappableSource, PageCacheSource, ResolvedModel, Source
from pagefault.sources.chain import SOURCE_KINDS
from pagefault.tensors.dtypes import to_torch_dtype

__all__ = ["LoadOptions", "Target", "open_stream"]

# A load_into target: an existing tensor to fill, or the dtype to allocate it with.
Target = torch.Tensor | torch.dtype
_STAGED_MAX_SEGMENTS = 256
_CACHE_SAMPLES = 16  # per file, to tell a cold load from a warm one
_CACHE_SAMPLE_BYTES = 1 << 20


@dataclass(frozen=True)
class LoadOptions:
    """How to load; every field has a sensible automatic default."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    mmap: bool | None = None
    dtype: torch.dtype | None = None
    threads: int | None = None
    memory_limit: int | None = None
    request_size: int | None = None
    verify: bool | None = None


def open_stream(
    model: ResolvedModel,
    options: LoadOptions,
    *,
    targets: Mapping[str, Target] | None = None,
    only: Sequence[str] | None = None,
    on_progress: Callable[[int], None] | None = None,
    close_model: bool = True,
) -> TensorStream:
    """Start loading ``model``: every tensor in file order, or those named in ``targets``
    (in their order), or in ``only`` (in its order, with memory of the load's choosing);
    stream the results in that order. A caller that runs layers as they arrive asks for
    execution order (the file's order is often ``layers.1``, ``layers.10``, ...).

    The stream closes ``model`` when it ends, unless ``close_model`` is False: a caller
    that reads the same model again and again (paged weights) keeps its sources open.
    """
    entries = _selected(model.manifest.tensors, targets if targets is not None else only)
    stats = LoadStats(
        device=str(options.device),
        bytes=sum(e.nbytes for e in entries),
        tensors=len(entries),
        files=len(model.sources),
        _counters=model.provenance.counters,
    )
    verifier = _verifier(model, options)
    stats.verified = verifier is not None or (
        model.provenance.checked_piece_size is not None and model.provenance.published
    )
    if _use_mapping(model, options, targets):
        return _open_mapped(
            model,
            entries,
            options,
            stats,
            verifier=verifier,
            on_progress=on_progress,
            close_model=close_model,
        )
    return _open_read(
        model,
        entries,
        options,
        stats,
        targets=targets,
        verifier=verifier,
        on_progress=on_progress,
        close_model=close_model,
    )


def _verifier(model: ResolvedModel, options: LoadOptions) -> PieceVerifier | None:
    """Check pieces when asked to, or by default when bytes cross a network."""
    wanted = options.verify if options.verify is not None else model.remote
    if model.provenance.checked_piece_size is not None and (
        model.provenance.published or not options.verify
    ):
        return None  # the sources (the node cache) check every piece themselves
    if not wanted or (model.pieces is None and options.verify is None):
        return None
    if model.pieces is None:
        where = model.sources[0].name if model.sources else "the model"
        raise NotFound(
            f"verify=True but no {MANIFEST_NAME} was published beside {where}; "
            "create one with `pagefault manifest build`"
        )
    return PieceVerifier(model.pieces, model.manifest, model.headers)


def _piece_size(
    model: ResolvedModel, verifier: PieceVerifier | None, request_size: int
) -> int | None:
    """Plan on piece boundaries when pieces are checked, so each task holds whole pieces.

    The loader's own verifier needs that; a checking source (the cache) only prefers it,
    so it gets it only when a piece fits in one request.
    """
    if verifier is not None:
        return verifier.piece_size
    checked = model.provenance.checked_piece_size
    return checked if checked is not None and checked <= request_size else None


def _selected(tensors: Sequence[TensorEntry], names: Iterable[str] | None) -> list[TensorEntry]:
    if names is None:
        return list(tensors)
    by_name = {t.name: t for t in tensors}
    return [by_name[name] for name in names]


def _use_mapping(
    model: ResolvedModel, options: LoadOptions, targets: Mapping[str, Target] | None
) -> bool:
    mappable = all(isinstance(s, MappableSource) for s in model.sources)
    possible = options.device.type == "cpu" and options.dtype is None and targets is None
    if options.mmap is True and not possible:
        raise SinkError("mmap=True needs device='cpu' and no dtype conversion; use mmap=False")
    if options.mmap is True and not mappable:
        remote = ", ".join(s.name for s in model.sources if not isinstance(s, MappableSource))
        raise SinkError(f"mmap=True needs local files; cannot map {remote}")
    return options.mmap is not False and possible and mappable


def _open_mapped(
    model: ResolvedModel,
    entries: list[TensorEntry],
    options: LoadOptions,
    stats: LoadStats,
    *,
    verifier: PieceVerifier | None,
    on_progress: Callable[[int], None] | None,
    close_model: bool,
) -> TensorStream:
    tuning = auto_tuning(
        threads=_threads(model, options),
        request_size=_request_size(model, options),
        memory_limit=None,
        staged=False,
        remote=model.remote,
    )
    sources = [source for source in model.sources if isinstance(source, MappableSource)]
    maps = [source.map_private() for source in sources]
    plan = plan_reads(
        entries,
        request_size=tuning.request_size,
        piece_size=_piece_size(model, verifier, tuning.request_size),
        tails_end_tasks=model.provenance.streaming,
    )
    stats.mode, stats.threads, stats.request_size = "mapped", tuning.threads, tuning.request_size
    stats.pages = "file-mapping"  # private copy-on-write views of the page cache
    read_ahead = ReadAhead(model.sources, plan.tasks).start()
    runner = PopulateRunner(
        sources,
        maps,
        stats=stats,
        verifier=verifier,
        on_progress=_also_tell(read_ahead, on_progress),
    )
    return _start(
        plan.tasks,
        plan.tensor_bytes,
        runner,
        entries,
        mapped_tensors(maps, entries),
        stats=stats,
        threads=tuning.threads,
        model=model,
        read_ahead=read_ahead,
        close_model=close_model,
    )


def _open_read(
    model: ResolvedModel,
    entries: list[TensorEntry],
    options: LoadOptions,
    stats: LoadStats,
    *,
    targets: Mapping[str, Target] | None,
    verifier: PieceVerifier | None,
    on_progress: Callable[[int], None] | None,
    close_model: bool,
) -> TensorStream:
    destinations = _destinations(entries, options, targets, stats)
    staged = any(d.staged and d.tensor.numel() for d in destinations)
    piece_size = verifier.piece_size if verifier else None
    overhead = ARENA_ALIGNMENT * _STAGED_MAX_SEGMENTS if staged else 0
    tuning = auto_tuning(
        threads=_threads(model, options),
        request_size=_request_size(model, options),
        memory_limit=options.memory_limit,
        staged=staged,
        remote=model.remote,
        spare_cpu=stats.pages == "hugetlb-pool" and _mostly_uncached(model.sources),
        min_slot_bytes=piece_size + overhead if piece_size else MIN_SLOT_BYTES,
    )
    ring, copy_stream = None, None
    if staged:
        cuda = next((d.tensor.device for d in destinations if d.tensor.device.type == "cuda"), None)
        ring = StagingRing(
            slots=tuning.staging_slots, slot_bytes=tuning.slot_bytes, pinned=cuda is not None
        )
        copy_stream = torch.cuda.Stream(cuda) if cuda is not None else None  # type: ignore[no-untyped-call]
    max_segments = _STAGED_MAX_SEGMENTS if staged else 1024
    request = tuning.request_size - overhead
    plan = plan_reads(
        entries,
        request_size=request,
        element_sizes=[d.source_dtype.itemsize if d.staged else 1 for d in destinations],
        max_segments=max_segments,
        piece_size=_piece_size(model, verifier, request),
        tails_end_tasks=model.provenance.streaming,
    )
    stats.mode = "into" if targets else "device" if options.device.type != "cpu" else "private"
    stats.threads, stats.request_size = tuning.threads, request
    read_ahead = ReadAhead(model.sources, plan.tasks).start()
    runner = ReadRunner(
        model.sources,
        destinations,
        stats=stats,
        ring=ring,
        copy_stream=copy_stream,
        verifier=verifier,
        on_progress=_also_tell(read_ahead, on_progress),
    )
    return _start(
        plan.tasks,
        plan.tensor_bytes,
        runner,
        entries,
        [d.tensor for d in destinations],
        stats=stats,
        threads=tuning.threads,
        model=model,
        copy_stream=copy_stream,
        read_ahead=read_ahead,
        close_model=close_model,
    )


def _mostly_uncached(sources: Sequence[Source]) -> bool:
    """Whether the page cache holds less than half of the local files (a cold load),
    judged from evenly spaced 1 MiB samples: asking about a whole 2 GB file walks
    half a million pages (8 ms)."""
    held, asked = 0, 0
    for source in sources:
        if not isinstance(source, PageCacheSource):
            continue
        size = source.size()
        for i in range(_CACHE_SAMPLES):
            offset = size * i // _CACHE_SAMPLES
            length = min(_CACHE_SAMPLE_BYTES, size - offset)
            cached = source.cached(offset, length)
            if cached is None:
                return False  # the kernel cannot say: assume warm, the usual tuning
            held, asked = held + cached, asked + length
    return asked > 0 and held < asked / 2


def _also_tell(
    read_ahead: ReadAhead, on_progress: Callable[[int], None] | None
) -> Callable[[int], None] | None:
    """The progress callback, also moving the read-ahead window when there is one."""
    if not read_ahead.wanted:
        return on_progress

    def progress(nbytes: int) -> None:
        read_ahead.consumed(nbytes)
        if on_progress is not None:
            on_progress(nbytes)

    return progress


def _destinations(
    entries: list[TensorEntry],
    options: LoadOptions,
    targets: Mapping[str, Target] | None,
    stats: LoadStats,
) -> list[Destination]:
    """Fill existing tensors where given; allocate the rest together (one arena on CPU)."""
    wanted = targets or {}
    fresh = [i for i, e in enumerate(entries) if not isinstance(wanted.get(e.name), torch.Tensor)]
    dtypes = [_fresh_dtype(entries[i], wanted.get(entries[i].name), options) for i in fresh]
    allocated = _allocate([entries[i] for i in fresh], dtypes, options.device, stats)
    result: dict[int, Destination] = dict(zip(fresh, allocated, strict=True))
    for i, entry in enumerate(entries):
        target = wanted.get(entry.name)
        if isinstance(target, torch.Tensor):
            result[i] = existing_destination(target, to_torch_dtype(entry.dtype, tensor=entry.name))
    return [result[i] for i in range(len(entries))]


def _fresh_dtype(entry: TensorEntry, target: Target | None, options: LoadOptions) -> torch.dtype:
    return target if isinstance(target, torch.dtype) else target_dtype(entry, options.dtype)


def _allocate(
    entries: list[TensorEntry], dtypes: list[torch.dtype], device: torch.device, stats: LoadStats
) -> list[Destination]:
    if device.type == "cpu":
        destinations, arena = arena_destinations(entries, dtypes)
        stats.pages = arena.pages if entries else ""  # load_into's own tensors only: none
        return destinations
    _check_device(device)
    stats.pages = "device"
    return device_destinations(entries, dtypes, device)


def _check_device(device: torch.device) -> None:
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SinkError(f"device {device} requested but torch.cuda.is_available() is False")


def _finish(
    model: ResolvedModel, stats: LoadStats, read_ahead: ReadAhead, *, close_model: bool
) -> None:
    read_ahead.stop()  # before the sources close: a hint would reopen a closed file
    stats.bytes_by_source, stats.corrupt_pieces = _bytes_by_source(model, stats)
    if close_model:
        model.close()


def _threads(model: ResolvedModel, options: LoadOptions) -> int | None:
    """The caller's thread count, else a few for sources that fill over time."""
    if options.threads is None and model.provenance.streaming:
        return STREAMING_THREADS
    return options.threads


def _request_size(model: ResolvedModel, options: LoadOptions) -> int | None:
    """The caller's request size, else small requests for sources that fill over time."""
    if options.request_size is None and model.provenance.streaming:
        return STREAMING_REQUEST_SIZE
    return options.request_size


def _bytes_by_source(model: ResolvedModel, stats: LoadStats) -> tuple[dict[str, int], int]:
    """Where the load's bytes came from: counted by the chain, or all from one place."""
    counters = model.provenance.counters
    if counters is not None:
        return counters.bytes_by_source(), counters.corrupt_pieces
    by_source = dict.fromkeys(SOURCE_KINDS, 0)
    by_source["origin" if model.remote else "local"] = stats.bytes
    return by_source, 0


def _start(
    tasks: Sequence[ReadTask],
    tensor_bytes: Sequence[int],
    runner: Callable[[ReadTask], None],
    entries: list[TensorEntry],
    tensors: Sequence[torch.Tensor],
    *,
    stats: LoadStats,
    threads: int,
    model: ResolvedModel,
    read_ahead: ReadAhead,
    close_model: bool,
    copy_stream: torch.cuda.Stream | None = None,
) -> TensorStream:
    tracker = CompletionTracker(tensor_bytes)
    executor = ParallelExecutor(tasks, runner, threads=threads, tracker=tracker)
    stream = TensorStream(
        [e.name for e in entries],
        tensors,
        tracker=tracker,
        executor=executor,
        stats=stats,
        on_close=lambda: _finish(model, stats, read_ahead, close_model=close_model),
        copy_stream=copy_stream,
    )
    executor.start()
    return stream
