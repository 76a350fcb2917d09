"""Public Python API: load, stream, load_into, inspect, save, and the remote verbs."""

from typing import TYPE_CHECKING

from pagefault._lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use: see pagefault._lazy
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

LAZY_EXPORTS = {  # name -> defining module; pagefault/__init__ re-exports these
    "IncompatibleKeys": "pagefault.api.modules",
    "VerifyReport": "pagefault.api.manifests",
    "inspect": "pagefault.api.loading",
    "load": "pagefault.api.loading",
    "load_into": "pagefault.api.modules",
    "make_piece_manifest": "pagefault.api.manifests",
    "pull": "pagefault.api.manifests",
    "save": "pagefault.api.saving",
    "stream": "pagefault.api.loading",
    "verify": "pagefault.api.manifests",
    "write_piece_manifest": "pagefault.api.manifests",
}
__getattr__, __dir__ = lazy_exports(globals(), LAZY_EXPORTS)

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
