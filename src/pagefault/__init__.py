"""pagefault: move model weights from storage into CPU/GPU memory at the hardware limit.

>>> import pagefault
>>> tensors = pagefault.load("model.safetensors")  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from pagefault._lazy import lazy_exports
from pagefault.api import LAZY_EXPORTS as _API_EXPORTS  # cheap: the api namespace is lazy too
from pagefault.errors import (
    CacheError,
    CheckpointError,
    ConfigError,
    FormatError,
    IntegrityError,
    LoadIntoError,
    NotFound,
    PagefaultError,
    SinkError,
    SourceError,
    SwarmError,
)

if TYPE_CHECKING:  # the names below load on first use: see pagefault._lazy
    from pagefault.api import (
        IncompatibleKeys,
        VerifyReport,
        inspect,
        load,
        load_into,
        make_piece_manifest,
        pull,
        save,
        stream,
        verify,
        write_piece_manifest,
    )
    from pagefault.cache import CacheConfig, NodeCache
    from pagefault.checkpoint import SaveHandle
    from pagefault.compile import CompileStats, compile_cache
    from pagefault.manifest import Manifest, PieceManifest, TensorEntry
    from pagefault.paging import PagedModel, PagedStats, paged
    from pagefault.pieces.download import PullResult
    from pagefault.pipeline import LoadStats, TensorStream
    from pagefault.tensors.recycle import recycle, release_recycled

_EXPORTS = {
    **_API_EXPORTS,
    "CacheConfig": "pagefault.cache",
    "CompileStats": "pagefault.compile",
    "compile_cache": "pagefault.compile",
    "LoadStats": "pagefault.pipeline.stats",
    "Manifest": "pagefault.manifest",
    "NodeCache": "pagefault.cache",
    "PagedModel": "pagefault.paging",
    "PagedStats": "pagefault.paging",
    "PieceManifest": "pagefault.manifest",
    "PullResult": "pagefault.pieces.download",
    "SaveHandle": "pagefault.checkpoint.saver",
    "TensorEntry": "pagefault.manifest",
    "TensorStream": "pagefault.pipeline.stream",
    "paged": "pagefault.paging",
    "recycle": "pagefault.tensors.recycle",
    "release_recycled": "pagefault.tensors.recycle",
}
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

__version__ = "0.1.0"

__all__ = [
    "CacheConfig",
    "CacheError",
    "CheckpointError",
    "CompileStats",
    "ConfigError",
    "FormatError",
    "IncompatibleKeys",
    "IntegrityError",
    "LoadIntoError",
    "LoadStats",
    "Manifest",
    "NodeCache",
    "NotFound",
    "PagedModel",
    "PagedStats",
    "PagefaultError",
    "PieceManifest",
    "PullResult",
    "SaveHandle",
    "SinkError",
    "SourceError",
    "SwarmError",
    "TensorEntry",
    "TensorStream",
    "VerifyReport",
    "__version__",
    "compile_cache",
    "inspect",
    "load",
    "load_into",
    "make_piece_manifest",
    "paged",
    "pull",
    "recycle",
    "release_recycled",
    "save",
    "stream",
    "verify",
    "write_piece_manifest",
]
