"""Hash or pull a whole model (local or remote) by name: what ``pagefault manifest build``,
``pagefault pull`` and a swarm's first fetcher run."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pagefault.errors import ConfigError
from pagefault.manifest import (
    DEFAULT_PIECE_SIZE,
    MANIFEST_NAME,
    SHA256,
    PieceHash,
    PieceManifest,
    check_piece_size,
)
from pagefault.manifest.digest import check_algorithm
from pagefault.pieces.companions import companion_files
from pagefault.pieces.digest import digest_files
from pagefault.pieces.download import PullResult, pull_model
from pagefault.pieces.engine import check_threads
from pagefault.sources import ResolvedModel, Source, resolve

__all__ = ["REMOTE_CONNECTIONS", "make_piece_manifest", "model_files", "pull", "threads_for"]

PathLike = str | os.PathLike[str]
Progress = Callable[[int], None]
REMOTE_CONNECTIONS = 16  # concurrent ranged GETs: remote round trips dominate


def make_piece_manifest(
    source: PathLike,
    *,
    piece_size: int = DEFAULT_PIECE_SIZE,
    threads: int | None = None,
    piece_hash: PieceHash = SHA256,
    on_progress: Progress | None = None,
    on_total: Progress | None = None,
) -> PieceManifest:
    """Hash every piece of a model (local or remote): its shards and its index.

    ``piece_hash="sha256"`` (default) also records the BitTorrent v2 hashes the swarm
    needs; ``"blake3"`` hashes ~12x faster where the CPU has no SHA extensions.
    """
    check_piece_size(piece_size, "piece manifest", error=ConfigError)
    check_algorithm(piece_hash, where="piece_hash")
    with resolve(source) as model:
        sources, names = model_files(model)
        if on_total is not None:
            on_total(sum(s.size() for s in sources))
        digests = digest_files(
            sources,
            names,
            piece_size=piece_size,
            threads=threads_for(threads),
            algorithm=piece_hash,
            on_progress=on_progress,
        )
    return PieceManifest(piece_size, tuple(digests))


def pull(
    source: PathLike,
    dest: PathLike,
    *,
    threads: int | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    on_progress: Progress | None = None,
    on_total: Progress | None = None,
) -> PullResult:
    """Download a model (file, index or prefix) into the directory ``dest``.

    Parallel ranged reads, every piece verified when a manifest is published, files
    renamed into place only when complete (the index last), and resumable: run it
    again after an interruption and finished pieces are kept; files a previous pull
    finished (same size and origin version) are skipped. When ``source`` is a directory
    or prefix, its other files (``config.json``, tokenizer files ...) come too, filtered
    by the ``include``/``exclude`` globs on their names. ``on_total(nbytes)``: once, the
    bytes still to fetch; ``on_progress(nbytes)``: as they arrive.
    """
    workers = threads_for(threads)
    with resolve(source) as model:
        taken = {*(f.name for f in model.manifest.files), MANIFEST_NAME}
        if model.index is not None:
            taken.add(model.index.name)
        extra = companion_files(
            source, taken=taken, include=include, exclude=exclude, avoid=Path(dest)
        )
        try:
            return pull_model(
                model,
                dest,
                threads=workers,
                extra=extra,
                on_progress=on_progress,
                on_total=on_total,
            )
        finally:
            for _, companion in extra:
                companion.close()


def model_files(model: ResolvedModel) -> tuple[list[Source], list[str]]:
    """A model's files (its shards, then its index) as sources, with their names."""
    names = [entry.name for entry in model.manifest.files]
    sources = list(model.sources)
    if model.index is not None:
        sources.append(model.index)
        names.append(model.index.name)
    return sources, names


def threads_for(threads: int | None) -> int:
    check_threads(threads)
    return threads or REMOTE_CONNECTIONS
