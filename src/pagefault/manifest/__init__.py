"""Model identity: files, tensor table with absolute byte ranges, per-piece digests."""

from pagefault.manifest.digest import (
    BLAKE3,
    PIECE_HASHES,
    SHA256,
    PieceHash,
    hash_piece,
    piece_matches,
)
from pagefault.manifest.model import FileEntry, Manifest, TensorEntry, build_manifest
from pagefault.manifest.pieces import (
    DEFAULT_PIECE_SIZE,
    MANIFEST_NAME,
    FileDigest,
    PieceHasher,
    PieceManifest,
    check_piece_size,
    piece_count,
)

__all__ = [
    "BLAKE3",
    "DEFAULT_PIECE_SIZE",
    "MANIFEST_NAME",
    "PIECE_HASHES",
    "SHA256",
    "FileDigest",
    "FileEntry",
    "Manifest",
    "PieceHash",
    "PieceHasher",
    "PieceManifest",
    "TensorEntry",
    "build_manifest",
    "check_piece_size",
    "hash_piece",
    "piece_count",
    "piece_matches",
]
