"""Public Python API: load, stream, load_into, inspect, save, and the remote verbs."""

from pagefault.api.loading import inspect, load, stream
from pagefault.api.manifests import (
    VerifyReport,
    make_piece_manifest,
    pull,
    verify,
    write_piece_manifest,
)
from pagefault.api.modules import IncompatibleKeys, load_into
from pagefault.api.saving import save

__all__ = [
    "IncompatibleKeys",
    "VerifyReport",
    "inspect",
    "load",
    "load_into",
    "make_piece_manifest",
    "pull",
    "save",
    "stream",
    "verify",
    "write_piece_manifest",
]
