"""Hash a model's files piece by piece, in parallel, from any source (build or check a manifest)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pagefault.manifest import SHA256, FileDigest, PieceHash, piece_count
from pagefault.manifest.pieces import digest_piece
from pagefault.pieces.engine import map_pieces
from pagefault.sources import Source

__all__ = ["digest_files"]


def digest_files(
    sources: Sequence[Source],
    names: Sequence[str],
    *,
    piece_size: int,
    threads: int,
    algorithm: PieceHash = SHA256,
    on_progress: Callable[[int], None] | None = None,
) -> list[FileDigest]:
    """Digest (and, for SHA-256, v2 Merkle hash) of every piece of every file; memory is
    ``threads`` pieces."""
    counts = [piece_count(source.size(), piece_size) for source in sources]
    jobs = [
        (source, index, count)
        for source, count in zip(sources, counts, strict=True)
        for index in range(count)
    ]

    def hash_one(job: tuple[Source, int, int]) -> tuple[str, str | None]:
        source, index, count = job
        start = index * piece_size
        buffer = bytearray(min(piece_size, source.size() - start))
        source.read_into(start, [memoryview(buffer)])
        if on_progress is not None:
            on_progress(len(buffer))
        return digest_piece([buffer], piece_size, pieces=count, algorithm=algorithm)

    hashes = map_pieces(hash_one, jobs, threads=threads, name="hash")
    digests, first = [], 0
    for source, name, count in zip(sources, names, counts, strict=True):
        digests.append(FileDigest.from_pieces(name, source.size(), hashes[first : first + count]))
        first += count
    return digests
