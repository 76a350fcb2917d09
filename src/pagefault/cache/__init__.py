"""The node cache: tiered (RAM in /dev/shm, disk), content-addressed, shared by processes."""

from pagefault.cache import manage
from pagefault.cache.catalog import Catalog, FileRecord, UriRecord
from pagefault.cache.config import CacheConfig, config_path, load_config, parse_size
from pagefault.cache.node import CacheChoice, NodeCache, node_cache
from pagefault.cache.resolve import cached_description, cached_sources, remember
from pagefault.cache.source import CachedFileSource

__all__ = [
    "CacheChoice",
    "CacheConfig",
    "CachedFileSource",
    "Catalog",
    "FileRecord",
    "NodeCache",
    "UriRecord",
    "cached_description",
    "cached_sources",
    "config_path",
    "load_config",
    "manage",
    "node_cache",
    "parse_size",
    "remember",
]
