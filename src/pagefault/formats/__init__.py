"""Safetensors and sharded-index parsing and writing; pure, no knowledge of sources."""

from pagefault.formats.dtypes import DType
from pagefault.formats.index import INDEX_SUFFIX, ShardedIndex, parse_index
from pagefault.formats.safetensors import (
    HEADER_PREFIX_BYTES,
    MAX_HEADER_BYTES,
    SafetensorsHeader,
    TensorInfo,
    parse_header,
    parse_header_length,
)
from pagefault.formats.writer import TensorSpec, build_header, write_safetensors

__all__ = [
    "HEADER_PREFIX_BYTES",
    "INDEX_SUFFIX",
    "MAX_HEADER_BYTES",
    "DType",
    "SafetensorsHeader",
    "ShardedIndex",
    "TensorInfo",
    "TensorSpec",
    "build_header",
    "parse_header",
    "parse_header_length",
    "parse_index",
    "write_safetensors",
]
