"""Model identity: files, tensor table with absolute byte ranges, per-piece SHA-256 digests."""

from pagefault.manifest.model import FileEntry, Manifest, TensorEntry, build_manifest
from pagefault.manifest.pieces import (
    DEFAULT_PIECE_SIZE,
    MANIFEST_NAME,
    FileDigest,
    PieceHasher,
    PieceManifest,
    hash_piece,
    piece_count,
)

__all__ = [
    "DEFAULT_PIECE_SIZE",
    "MANIFEST_NAME",
    "FileDigest",
    "FileEntry",
    "Manifest",
    "PieceHasher",
    "PieceManifest",
    "TensorEntry",
    "build_manifest",
    "hash_piece",
    "piece_count",
]
