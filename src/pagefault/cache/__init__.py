"""The node cache: tiered (RAM in /dev/shm, disk), content-addressed, shared by processes."""

from pagefault.cache import manage
from pagefault.cache.catalog import Catalog, FileRecord, UriRecord
from pagefault.cache.config import CacheConfig, config_path, load_config, parse_size
from pagefault.cache.node import NodeCache
from pagefault.cache.resolve import resolve_cached
from pagefault.cache.source import CacheCounters, CachedFileSource

__all__ = [
    "CacheConfig",
    "CacheCounters",
    "CachedFileSource",
    "Catalog",
    "FileRecord",
    "NodeCache",
    "UriRecord",
    "config_path",
    "load_config",
    "manage",
    "parse_size",
    "resolve_cached",
]
