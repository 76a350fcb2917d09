"""BitTorrent v2 (BEP 52) Merkle hashes of file pieces, so a swarm torrent can be built from a
manifest alone, before any node holds the bytes.

A v2 torrent names each file by the root of a SHA-256 Merkle tree over its 16 KiB blocks and
ships the "piece layer" (one subtree root per piece) so peers can verify whole pieces. Missing
leaves are 32 zero bytes. A file of one piece has no piece layer: its root is the tree over its
own blocks, padded only to the next power of two. These rules are checked against libtorrent's
own hashing in the tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["BLOCK_SIZE", "BlockHasher", "block_hashes", "file_root", "piece_root", "tree_root"]

BLOCK_SIZE = 16 * 1024
_ZERO = bytes(32)


def tree_root(leaves: Sequence[bytes], width: int, pad: bytes = _ZERO) -> bytes:
    """Root of a binary tree of ``width`` (a power of two) leaves, missing ones equal to ``pad``."""
    layer = list(leaves)
    while width > 1:
        if len(layer) % 2:
            layer.append(pad)
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
        pad = hashlib.sha256(pad + pad).digest()
        width //= 2
    return layer[0] if layer else pad


class BlockHasher:
    """SHA-256 of each 16 KiB block of bytes given in chunks of any size (the last may be short)."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []
        self._block = hashlib.sha256()
        self._filled = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            take = min(view.nbytes, BLOCK_SIZE - self._filled)
            self._block.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == BLOCK_SIZE:
                self.flush()

    def flush(self) -> list[bytes]:
        """End the current (possibly short) block; return every block hash so far."""
        if self._filled:
            self.blocks.append(self._block.digest())
            self._block, self._filled = hashlib.sha256(), 0
        return self.blocks


def block_hashes(chunks: Sequence[bytes | bytearray | memoryview]) -> list[bytes]:
    """SHA-256 of each 16 KiB block of the concatenation of ``chunks``."""
    hasher = BlockHasher()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.flush()


def piece_root(blocks: Sequence[bytes], piece_size: int, *, whole_file: bool) -> bytes:
    """Hash recorded for a piece: its piece-layer entry, or the root of a one-piece file."""
    width = piece_size // BLOCK_SIZE if not whole_file else _next_power_of_two(len(blocks))
    return tree_root(blocks, width)


def file_root(roots: Sequence[bytes], piece_size: int) -> bytes:
    """A file's ``pieces root`` from the hashes :func:`piece_root` gave for its pieces."""
    if len(roots) == 1:
        return roots[0]
    empty_piece = tree_root([], piece_size // BLOCK_SIZE)
    return tree_root(roots, _next_power_of_two(len(roots)), empty_piece)


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()
