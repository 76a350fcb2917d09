"""Paged weights: run a model larger than its memory budget, or serve while it loads.

``paged(model, source, budget=...)`` keeps the embeddings, head and norms resident and
streams each decoder layer through a bounded pool of reused slots, reading ahead in
execution order. With ``budget=None`` every layer gets memory of its own, ``paged``
returns at once, and the first forward runs while later layers are still arriving.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from pagefault.api.chain import CacheChoice, open_model
from pagefault.api.loading import parse_device, parse_dtype
from pagefault.api.parameters import (
    checked_shape,
    computed_buffers,
    match_checkpoint,
    module_tensors,
)
from pagefault.errors import ConfigError, SinkError
from pagefault.pieces.engine import check_threads
from pagefault.pipeline import LoadOptions
from pagefault.sources import LocalFileSource, MappableSource, ResolvedModel
from pagefault.system.sizes import parse_size

from .groups import Layout, layout_groups
from .model import PagedModel
from .pager import Pager
from .readers import MappedReader, StreamReader
from .slots import SlotPool
from .stats import PagedStats

__all__ = ["PagedModel", "PagedStats", "paged"]


def paged(
    model: nn.Module,
    source: str | os.PathLike[str],
    *,
    budget: int | str | None,
    device: str | torch.device = "cpu",
    prefetch: int | None = None,
    cache: CacheChoice = None,
    dtype: torch.dtype | str | None = None,
    mmap: bool | None = None,
    threads: int | None = None,
    verify: bool | None = None,
) -> PagedModel:
    """Page ``model``'s decoder layers from ``source`` through ``budget`` bytes of weights.

    Args:
        model: an ``nn.Module`` built on ``meta`` (``accelerate.init_empty_weights()``)
            or materialized. Its largest repeated ``ModuleList`` is paged, one child at a
            time; everything else stays resident. Hooks are added to it: afterwards
            ``model(...)`` and ``model.generate(...)`` work unchanged.
        source: anything :func:`pagefault.load` takes (file, index, directory, remote
            URI through the node cache and swarm agent).
        budget: bytes (or ``"512MiB"``) for every resident weight byte: the resident
            part plus the slots. At least the resident part plus the largest layer.
            ``None``: the whole model, served while loading.
        device: ``"cpu"`` or ``"cuda[:N]"``; where the weights and slots live.
        prefetch: layers to read ahead; ``None`` picks enough to hide a layer's read
            behind a layer's compute (measured), within the slots the budget buys.
        cache, verify, threads: as for :func:`pagefault.load`.
        dtype: convert floating-point weights to this dtype; default: the module's own.
        mmap: ``None`` (default): local files on CPU with no conversion are paged as
            views of the file's pages (zero-copy: a layer is mapped in and dropped
            again, the budget bounding how many are mapped); other sources read into
            reused slot memory. ``False``: always slots. ``True``: require mapping.

    Raises ``ConfigError`` for a budget too small (naming the layer and the minimum) and
    ``LoadIntoError`` for missing, unexpected or mis-shaped tensors, before any forward.

    >>> with accelerate.init_empty_weights():  # doctest: +SKIP
    ...     model = AutoModelForCausalLM.from_config(config)
    >>> with pagefault.paged(model, "s3://bucket/llama", budget="4GiB") as pm:  # doctest: +SKIP
    ...     pm.generate(input_ids, max_new_tokens=16)
    """
    target = parse_device(device)
    limit = _parse_budget(budget)
    check_threads(threads)
    if prefetch is not None and prefetch < 0:
        raise ConfigError(f"prefetch={prefetch}: give a number of layers >= 0, or None")
    if target.type == "cuda" and not torch.cuda.is_available():
        raise SinkError(f"device {target} requested but torch.cuda.is_available() is False")
    tensors = module_tensors(model)
    resolved = open_model(source, cache)
    try:
        chosen, _ = match_checkpoint(model, resolved.manifest, tensors, strict=True, source=source)
        for name in chosen:
            checked_shape(name, tensors[name].tensor, resolved.manifest)
        layout = layout_groups(
            model, tensors, chosen=chosen, manifest=resolved.manifest, dtype=parse_dtype(dtype)
        )
        slots = _slot_count(layout, limit)
        _move_computed_buffers(model, target)
        mapped = _maps(resolved, layout, target, mmap=mmap, verify=verify, paging=limit is not None)
        options = LoadOptions(device=target, threads=threads, verify=verify)
        pool, pager = _memory(
            resolved, layout, slots, options, mapped=mapped, paging=limit is not None
        )
    except BaseException:
        resolved.close()
        raise
    stats = PagedStats(
        budget=limit,
        resident_bytes=layout.resident_bytes,
        slot_bytes=layout.slot_bytes,
        slots=slots,
        groups=len(layout.groups),
        pages="file-mapping" if mapped else pool.pages if pool else "per-group",
        prefetch_depth=min(prefetch, slots - 1) if prefetch is not None else slots - 1,
    )
    paged_model = PagedModel(
        model,
        layout=layout,
        tensors=tensors,
        pager=pager,
        pool=pool,
        stats=stats,
        prefetch=prefetch,
        device=target,
    )
    try:
        return paged_model.start()
    except BaseException:
        paged_model.close()
        raise


def _memory(
    model: ResolvedModel,
    layout: Layout,
    slots: int,
    options: LoadOptions,
    *,
    mapped: bool,
    paging: bool,
) -> tuple[SlotPool | None, Pager]:
    """Where layers live and who reads them. Paging: views of the files' pages dropped on
    eviction, else reads into a pool of slots. Serving: one load of everything, mapped
    where it may be, into memory of each layer's own."""
    if paging and mapped:
        return None, Pager(model, MappedReader(model))
    if paging:
        pool = SlotPool(count=slots, slot_bytes=layout.slot_bytes, device=options.device)
        return pool, Pager(model, StreamReader(model, dataclasses.replace(options, mmap=False)))
    mode = None if mapped else False
    return None, Pager(model, StreamReader(model, dataclasses.replace(options, mmap=mode)))


def _move_computed_buffers(model: nn.Module, device: torch.device) -> None:
    """Buffers the module computes (rotary tables: not in the checkpoint, real even when
    built on meta) go where the weights go, or the first forward mixes devices."""
    for _, owner, attr, buffer in computed_buffers(model):
        if buffer is not None and not buffer.is_meta and buffer.device != device:
            owner._buffers[attr] = buffer.to(device)


def _maps(
    model: ResolvedModel,
    layout: Layout,
    device: torch.device,
    *,
    mmap: bool | None,
    verify: bool | None,
    paging: bool,
) -> bool:
    """Whether layers are views of mapped pages (see ``mmap``). Paging drops a layer's
    pages and maps them again, which only a plain file's mapping survives: a node-cache
    mapping holds pieces read into anonymous memory, and dropping those loses them."""
    kind = LocalFileSource if paging else MappableSource
    why = (
        f"device {device}" if device.type != "cpu"
        else "a dtype conversion" if layout.converts
        else "verify=True (pieces are checked as they are read)" if verify
        else "a source that is not a local file" if not all(
            isinstance(s, kind) for s in model.sources
        )
        else None
    )  # fmt: skip
    if mmap is True and why is not None:
        raise SinkError(f"mmap=True needs local files on CPU with no conversion; this has {why}")
    return mmap is not False and why is None


def _parse_budget(budget: int | str | None) -> int | None:
    if budget is None:
        return None
    try:
        return parse_size(budget)
    except ValueError as exc:
        raise ConfigError(f"budget={budget!r}: {exc}") from exc


def _slot_count(layout: Layout, budget: int | None) -> int:
    """Slots the budget buys, at most one per layer; the whole model when it has none."""
    if not layout.groups:
        raise ConfigError("paged(): no layer of the model has tensors in the checkpoint")
    if budget is None:
        return len(layout.groups)
    minimum, largest = layout.minimum_budget()
    if budget < minimum:
        raise ConfigError(
            f"budget={budget} bytes is below the minimum {minimum} bytes: the resident part "
            f"({layout.resident_bytes} bytes: embeddings, head, norms, buffers) plus the "
            f"largest layer, {largest} ({layout.slot_bytes} bytes)"
        )
    return min(len(layout.groups), (budget - layout.resident_bytes) // layout.slot_bytes)
