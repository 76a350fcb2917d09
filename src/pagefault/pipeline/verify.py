"""Check each read task's bytes against the piece manifest before its tensors are exposed.

Tasks are planned on piece boundaries (``plan_reads(piece_size=...)``), so a task holds
whole pieces, except that a file's first data piece also covers the tail of the header:
those bytes come from the header already fetched. Pieces that lie wholly inside a header
are checked once, up front. Hashing runs on the I/O threads (hashlib and blake3 release
the GIL), with the manifest's algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence

from pagefault.errors import IntegrityError, SinkError
from pagefault.manifest import FileDigest, Manifest, PieceManifest, hash_piece
from pagefault.pipeline.plan import ReadTask
from pagefault.sources.cursor import BufferCursor

__all__ = ["PieceVerifier"]


class PieceVerifier:
    """Verifies tasks of one load; construct it after resolving, before reading any data."""

    def __init__(self, pieces: PieceManifest, manifest: Manifest, headers: Sequence[bytes]) -> None:
        self.piece_size = pieces.piece_size
        self.algorithm = pieces.algorithm
        self._manifest = manifest
        self._digests = [pieces.file(entry.name) for entry in manifest.files]
        self._headers = headers
        for file_index in range(len(manifest.files)):
            self._check_header_pieces(file_index)

    def verify(self, task: ReadTask, buffers: Sequence[memoryview]) -> None:
        """Raise ``IntegrityError`` unless every piece of ``task`` matches its digest."""
        digest = self._digests[task.file_index]
        header = self._headers[task.file_index]
        start, end = task.file_offset, task.file_offset + task.length
        self._check_alignment(task, digest, start, end)
        data = BufferCursor(buffers)
        first = start // self.piece_size
        for index in range(first, -(-end // self.piece_size)):
            piece_start, piece_end = digest.piece_range(index, self.piece_size)
            chunks: list[bytes | memoryview] = []
            if piece_start < start:
                chunks.append(header[piece_start:start])
            chunks += data.take(piece_end - max(piece_start, start))
            self._compare(task.file_index, index, hash_piece(chunks, self.algorithm))

    def _check_header_pieces(self, file_index: int) -> None:
        header = self._headers[file_index]
        digest = self._digests[file_index]
        for index in range(len(header) // self.piece_size):
            start, end = digest.piece_range(index, self.piece_size)
            self._compare(file_index, index, hash_piece([header[start:end]], self.algorithm))
        if len(header) == digest.size and len(header) % self.piece_size:
            last = len(header) // self.piece_size
            start, end = digest.piece_range(last, self.piece_size)
            self._compare(file_index, last, hash_piece([header[start:end]], self.algorithm))

    def _check_alignment(self, task: ReadTask, digest: FileDigest, start: int, end: int) -> None:
        data_start = len(self._headers[task.file_index])
        aligned = (start % self.piece_size == 0 or start == data_start) and (
            end % self.piece_size == 0 or end == digest.size
        )
        if not aligned:
            raise SinkError(
                f"{digest.name}: cannot verify bytes [{start}, {end}) on their own: pieces are "
                f"{self.piece_size} bytes; verified loads read whole pieces (load every tensor, "
                "or pass verify=False)"
            )

    def _compare(self, file_index: int, piece: int, actual: str) -> None:
        digest = self._digests[file_index]
        if actual != digest.pieces[piece]:
            start, end = digest.piece_range(piece, self.piece_size)
            raise IntegrityError(
                f"{digest.name}: piece {piece} (bytes [{start}, {end})) has digest "
                f"{actual[:16]}..., the manifest says {digest.pieces[piece][:16]}...; "
                "the bytes were corrupted or the model changed"
            )
