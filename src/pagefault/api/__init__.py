"""Public Python API: load, stream, load_into, inspect, and the remote verbs (pull, manifests)."""

from pagefault.api.loading import inspect, load, stream
from pagefault.api.manifests import (
    VerifyReport,
    make_piece_manifest,
    pull,
    verify,
    write_piece_manifest,
)
from pagefault.api.modules import IncompatibleKeys, load_into

__all__ = [
    "IncompatibleKeys",
    "VerifyReport",
    "inspect",
    "load",
    "load_into",
    "make_piece_manifest",
    "pull",
    "stream",
    "verify",
    "write_piece_manifest",
]
