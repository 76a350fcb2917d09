"""Public Python API: load, stream, load_into, inspect."""

from pagefault.api.loading import inspect, load, stream
from pagefault.api.modules import IncompatibleKeys, load_into

__all__ = ["IncompatibleKeys", "inspect", "load", "load_into", "stream"]
