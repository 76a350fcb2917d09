"""pagefault: move model weights from storage into CPU/GPU memory at the hardware limit.

>>> import pagefault
>>> tensors = pagefault.load("model.safetensors")  # doctest: +SKIP
"""

from pagefault.api import IncompatibleKeys, inspect, load, load_into, save, stream
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
from pagefault.manifest import Manifest, TensorEntry
from pagefault.pipeline import LoadStats, TensorStream

__version__ = "0.1.0"

__all__ = [
    "CacheError",
    "CheckpointError",
    "FormatError",
    "IncompatibleKeys",
    "IntegrityError",
    "LoadIntoError",
    "LoadStats",
    "Manifest",
    "NotFound",
    "PagefaultError",
    "SaveHandle",
    "SinkError",
    "SourceError",
    "SwarmError",
    "TensorEntry",
    "TensorStream",
    "__version__",
    "inspect",
    "load",
    "load_into",
    "save",
    "stream",
]
