"""pagefault: move model weights from storage into CPU/GPU memory at the hardware limit.

>>> import pagefault
>>> tensors = pagefault.load("model.safetensors")  # doctest: +SKIP
"""

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
from pagefault.errors import (
    CacheError,
    CheckpointError,
    FormatError,
    IntegrityError,
    LoadIntoError,
    NotFound,
    PagefaultError,
    SinkError,
    SourceError,
    SwarmError,
)
from pagefault.manifest import Manifest, PieceManifest, TensorEntry
from pagefault.pipeline import LoadStats, TensorStream
from pagefault.pipeline.download import PullResult

__version__ = "0.1.0"

__all__ = [
    "CacheConfig",
    "CacheError",
    "CheckpointError",
    "FormatError",
    "IncompatibleKeys",
    "IntegrityError",
    "LoadIntoError",
    "LoadStats",
    "Manifest",
    "NodeCache",
    "NotFound",
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
