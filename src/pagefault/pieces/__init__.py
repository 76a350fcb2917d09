"""Whole-model piece work over sources: hash every piece (build or check a manifest), pull a
model into a directory, and the one engine both (and the cache and the swarm) run on."""

from pagefault.pieces.digest import digest_files
from pagefault.pieces.download import PullResult, pull_model
from pagefault.pieces.engine import map_pieces
from pagefault.pieces.models import REMOTE_CONNECTIONS, make_piece_manifest, pull

__all__ = [
    "REMOTE_CONNECTIONS",
    "PullResult",
    "digest_files",
    "make_piece_manifest",
    "map_pieces",
    "pull",
    "pull_model",
]
