"""The whole pagefault exception tree, in one place.

::

    PagefaultError                      base of everything pagefault raises
    ├── FormatError (ValueError)        malformed safetensors file or sharded index
    ├── ConfigError (ValueError)        an argument, option or setting out of range
    ├── NotFound (FileNotFoundError)    a model, shard or tensor that does not exist
    ├── IntegrityError                  bytes that fail verification (hash, size, version)
    ├── SourceError (OSError)           a source failed to deliver bytes (I/O, network)
    ├── SinkError                       the destination cannot take the tensors (device, memory)
    ├── LoadIntoError (KeyError)        module/checkpoint mismatch in ``load_into``
    ├── CacheError                      node cache failures
    ├── SwarmError                      peer-to-peer distribution failures
    │   └── ControlError                a coordinator/agent API call failed (``status``)
    └── CheckpointError                 saving checkpoints failed

Every error raised from a backend is re-raised as one of these with ``from exc``;
messages name the file or tensor, the numbers involved, and the fix when there is one.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CheckpointError",
    "ConfigError",
    "ControlError",
    "FormatError",
    "IntegrityError",
    "LoadIntoError",
    "NotFound",
    "PagefaultError",
    "SinkError",
    "SourceError",
    "SwarmError",
]


class PagefaultError(Exception):
    """Base class of every error pagefault raises on purpose."""


class FormatError(PagefaultError, ValueError):
    """A safetensors file or sharded index is malformed; the message names the file."""


class ConfigError(PagefaultError, ValueError):
    """An argument, CLI option, environment variable or config value is invalid; the
    message names it, the value given and what is allowed."""


class NotFound(PagefaultError, FileNotFoundError):
    """A model, shard or tensor does not exist."""


class IntegrityError(PagefaultError):
    """Bytes failed verification: wrong hash, wrong length, or a changed object version."""


class SourceError(PagefaultError, OSError):
    """A source could not deliver the requested bytes."""


class SinkError(PagefaultError):
    """The destination (CPU arena, CUDA device) cannot hold the tensors."""


class LoadIntoError(PagefaultError, KeyError):
    """A module's parameters and a checkpoint's tensors do not match."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class CacheError(PagefaultError):
    """The node cache failed."""


class SwarmError(PagefaultError):
    """Peer-to-peer distribution failed."""


class ControlError(SwarmError):
    """A control-plane request (coordinator or node agent API) failed: unreachable,
    refused, or answered with an error; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CheckpointError(PagefaultError):
    """Saving a checkpoint failed."""
