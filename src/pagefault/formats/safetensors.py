"""Parse and strictly validate safetensors headers, from bytes, with no I/O.

Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
length ``n``, ``n`` bytes of UTF-8 JSON starting with ``{``, then the data section.
Every tensor's ``data_offsets`` are relative to the data section; together they must
cover it exactly: no holes, no overlaps, nothing past its end.

Every check here runs before any allocation sized by the file, so a hostile file can
cost at most ``MAX_HEADER_BYTES`` of memory and never an untyped exception.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pagefault.errors import FormatError
from pagefault.formats.dtypes import DType

__all__ = [
    "HEADER_PREFIX_BYTES",
    "MAX_HEADER_BYTES",
    "SafetensorsHeader",
    "TensorInfo",
    "parse_header",
    "parse_header_length",
]

HEADER_PREFIX_BYTES = 8
# Same cap as the reference implementation: a 100 MB header already describes
# hundreds of thousands of tensors; anything larger is corrupt or hostile.
MAX_HEADER_BYTES = 100_000_000
MAX_RANK = 64
_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a safetensors file; ``start``/``end`` are relative to the data section."""

    name: str
    dtype: DType
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header: tensors sorted by offset, the data section's position and size."""

    tensors: tuple[TensorInfo, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    data_offset: int = HEADER_PREFIX_BYTES
    data_size: int = 0

    @property
    def file_size(self) -> int:
        return self.data_offset + self.data_size


def parse_header_length(prefix: bytes, *, file_size: int, name: str) -> int:
    """Decode and bound the 8-byte header length so the caller can fetch the header safely."""
    if file_size < HEADER_PREFIX_BYTES or len(prefix) < HEADER_PREFIX_BYTES:
        raise FormatError(f"{name}: file is {file_size} bytes, too small for a safetensors header")
    (length,) = struct.unpack("<Q", prefix[:HEADER_PREFIX_BYTES])
    if length < 2:
        raise FormatError(f"{name}: header length {length} is too small to hold a JSON object")
    if length > MAX_HEADER_BYTES:
        raise FormatError(
            f"{name}: header length {length} exceeds the {MAX_HEADER_BYTES}-byte limit "
            "(corrupt file, or not a safetensors file)"
        )
    if HEADER_PREFIX_BYTES + length > file_size:
        raise FormatError(
            f"{name}: header length {length} runs past the end of the {file_size}-byte file"
        )
    return int(length)


def parse_header(header: bytes, *, file_size: int, name: str) -> SafetensorsHeader:
    """Validate the JSON header of a ``file_size``-byte file; ``header`` excludes the prefix."""
    data_offset = HEADER_PREFIX_BYTES + len(header)
    data_size = file_size - data_offset
    if data_size < 0:
        raise FormatError(f"{name}: header runs past the end of the {file_size}-byte file")
    raw = _decode_json(header, name)
    metadata = _parse_metadata(raw.pop("__metadata__", None), name)
    tensors = sorted(
        (_parse_tensor(key, value, name) for key, value in raw.items()),
        key=lambda t: (t.start, t.end),
    )
    _check_coverage(tensors, data_size, name)
    return SafetensorsHeader(
        tensors=tuple(tensors), metadata=metadata, data_offset=data_offset, data_size=data_size
    )


def _decode_json(header: bytes, name: str) -> dict[str, Any]:
    if not header.startswith(b"{"):
        raise FormatError(f"{name}: header does not start with '{{' (not a safetensors file?)")
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{name}: header is not valid UTF-8 (byte {exc.start})") from exc
    try:
        parsed = json.loads(text, object_pairs_hook=_reject_duplicate_keys(name))
    except RecursionError as exc:
        raise FormatError(f"{name}: header JSON is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise FormatError(f"{name}: header is not valid JSON: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(parsed, dict):
        raise FormatError(f"{name}: header must be a JSON object, got {type(parsed).__name__}")
    return parsed


def _reject_duplicate_keys(name: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise FormatError(f"{name}: header has duplicate key {key!r}")
            result[key] = value
        return result

    return hook


def _parse_metadata(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"{name}: __metadata__ must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise FormatError(f"{name}: __metadata__[{key!r}] must be a string, got {item!r:.60}")
    return dict(value)


def _parse_tensor(key: str, value: Any, name: str) -> TensorInfo:
    where = f"{name}: tensor {key!r}"
    if not isinstance(value, dict):
        raise FormatError(f"{where}: entry must be an object")
    if set(value) != _TENSOR_KEYS:
        raise FormatError(
            f"{where}: entry must have exactly keys dtype, shape, data_offsets; got {sorted(value)}"
        )
    dtype = _parse_dtype(value["dtype"], where)
    shape = _parse_shape(value["shape"], where)
    start, end = _parse_offsets(value["data_offsets"], where)
    expected = dtype.nbytes(math.prod(shape))
    if expected is None:
        raise FormatError(f"{where}: {shape} elements of {dtype.value} do not fill whole bytes")
    if end - start != expected:
        raise FormatError(
            f"{where}: shape {list(shape)} of {dtype.value} needs {expected} bytes "
            f"but data_offsets [{start}, {end}) hold {end - start}"
        )
    return TensorInfo(name=key, dtype=dtype, shape=shape, start=start, end=end)


def _parse_dtype(value: Any, where: str) -> DType:
    try:
        return DType(value)
    except (ValueError, TypeError) as exc:
        raise FormatError(f"{where}: unknown dtype {value!r:.40}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_RANK:
        raise FormatError(f"{where}: shape must be a list of at most {MAX_RANK} integers")
    if not all(_is_int(dim) and dim >= 0 for dim in value):
        raise FormatError(f"{where}: shape {value!r:.80} must hold non-negative integers")
    return tuple(value)


def _parse_offsets(value: Any, where: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)):
        raise FormatError(f"{where}: data_offsets must be a list of two integers")
    start, end = value
    if not 0 <= start <= end:
        raise FormatError(f"{where}: data_offsets [{start}, {end}) are not an ordered range")
    return start, end


def _check_coverage(tensors: list[TensorInfo], data_size: int, name: str) -> None:
    """Require the sorted tensors to tile the data section exactly, as the spec does."""
    position = 0
    for tensor in tensors:
        if tensor.start != position:
            problem = "overlaps the previous tensor" if tensor.start < position else "leaves a hole"
            raise FormatError(
                f"{name}: tensor {tensor.name!r} at bytes [{tensor.start}, {tensor.end}) "
                f"{problem} (expected it to start at {position})"
            )
        position = tensor.end
    if position > data_size:
        raise FormatError(
            f"{name}: tensors need {position} data bytes but the data section holds {data_size} "
            "(truncated file?)"
        )
    if position < data_size:
        raise FormatError(
            f"{name}: data section has {data_size - position} bytes after the last tensor"
        )
