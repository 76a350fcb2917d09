"""Public Python API: load, stream, load_into, inspect, save."""

from pagefault.api.loading import inspect, load, stream
from pagefault.api.modules import IncompatibleKeys, load_into
from pagefault.api.saving import save

__all__ = ["IncompatibleKeys", "inspect", "load", "load_into", "save", "stream"]
