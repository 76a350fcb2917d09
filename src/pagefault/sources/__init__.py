"""Byte sources: one small protocol, local files, in-memory fake, and the resolver."""

from pagefault.sources.base import Buffer, MappableSource, PageCacheSource, Source
from pagefault.sources.local import LocalFileSource
from pagefault.sources.memory import MemorySource
from pagefault.sources.resolve import ResolvedModel, read_header, resolve, resolve_sources

__all__ = [
    "Buffer",
    "LocalFileSource",
    "MappableSource",
    "MemorySource",
    "PageCacheSource",
    "ResolvedModel",
    "Source",
    "read_header",
    "resolve",
    "resolve_sources",
]
