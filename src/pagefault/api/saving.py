"""``save``: the public entry point for writing a checkpoint."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from pagefault.checkpoint import (
    DEFAULT_MAX_SHARD_SIZE,
    SaveHandle,
    SaveOptions,
    open_writer,
    start_save,
)
from pagefault.manifest import BLAKE3, PieceHash

__all__ = ["save"]


def save(
    state_dict: Mapping[str, torch.Tensor],
    dest: str | os.PathLike[str],
    *,
    async_: bool = True,
    max_shard_size: int = DEFAULT_MAX_SHARD_SIZE,
    threads: int | None = None,
    staging_budget: int | None = None,
    hash_pieces: bool = True,
    piece_hash: PieceHash = BLAKE3,
    metadata: Mapping[str, str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SaveHandle:
    """Save tensors as a Hugging Face sharded safetensors checkpoint, atomically.

    With ``async_=True`` (default) the call returns as soon as the tensors' bytes are
    copied into a reusable host buffer; the caller may then modify them. Shards
    (``model-00001-of-0000N.safetensors``), the piece manifest and
    ``model.safetensors.index.json`` are written in the background, and ``dest``
    shows the new checkpoint only once all of it is durable: a crash leaves the
    previous one. ``handle.wait()`` returns the stats or raises ``CheckpointError``.

    Args:
        state_dict: names to CPU or CUDA tensors (e.g. ``model.state_dict()``).
        dest: a directory (replaced as a whole; its non-weight plain files such as
            ``config.json`` are kept), or an object-store URI (``s3://bucket/prefix``).
        async_: ``False`` persists before returning; contiguous CPU tensors are then
            written straight from their memory with no snapshot copy.
        max_shard_size: bytes of tensors per shard (Hugging Face's greedy split).
        threads: hashing threads, and the cap on parallel shard writers (default one
            per CPU, 2 to 16).
        staging_budget: host bytes the process may hold in snapshot buffers. Default:
            one snapshot, so a save waits for the previous one to finish persisting
            and reuses its buffer; give twice the state dict to overlap them.
        hash_pieces: hash every piece and write ``pagefault.manifest.json``.
        piece_hash: ``"blake3"`` (default: keeps up with the disk, ~12x SHA-256's speed
            without SHA CPU extensions) or ``"sha256"`` (slower; also records the
            BitTorrent v2 hashes the swarm needs, so the checkpoint can be swarmed as is).
        metadata: extra string metadata for every shard header (``format: pt`` is set).
        storage_options: extra object-store settings (``region``, ``endpoint``, ...).
            Credentials come from the environment, as for loads; passing them here
            is a ``ConfigError``.
        on_progress: called with byte counts as shards are written, from worker threads.

    >>> handle = pagefault.save(model.state_dict(), "ckpt/step-100")  # doctest: +SKIP
    >>> handle.wait()  # doctest: +SKIP
    """
    options = SaveOptions(
        max_shard_size=max_shard_size,
        threads=threads,
        staging_budget=staging_budget,
        hash_pieces=hash_pieces,
        piece_hash=piece_hash,
        metadata=metadata,
    )
    writer = open_writer(dest, storage_options=storage_options)
    return start_save(state_dict, writer, options, async_=async_, on_progress=on_progress)
