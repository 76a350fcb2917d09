"""Parse and strictly validate safetensors headers, from bytes, with no I/O.

Layout (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
length ``n``, ``n`` bytes of UTF-8 JSON (an object, after optional whitespace), then
the data section. Every tensor's ``data_offsets`` are relative to the data section;
together they must cover it exactly: no holes, no overlaps, nothing past its end.

The rules are the reference implementation's, to the letter, so that a file loads here
exactly when it loads there (tests/formats/corpus): JSON as serde_json reads it
(``strict_json``), unknown fields in a tensor entry ignored, a repeated tensor name
keeping its last entry, sizes and element counts in unsigned 64-bit arithmetic.

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
from pagefault.formats import strict_json
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
_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})
_METADATA_KEY = "__metadata__"
_JSON_WHITESPACE = b" \t\n\r"


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
    try:
        raw = _decode_json(header, name)
        metadata = _parse_metadata(raw, name)
        entries = {key: _typed_entry(key, value, name) for key, value in raw.items()}
        for key, value in raw.shadowed:  # serde type-checks a repeated tensor, keeps the last
            if key != _METADATA_KEY:
                _typed_entry(key, value, name)
    except strict_json.JsonRuleError as exc:
        raise FormatError(f"{name}: header is not valid JSON for safetensors: {exc}") from None
    tensors = sorted(
        (_sized(tensor, name) for tensor in entries.values()),
        key=lambda t: (t.start, t.end),
    )
    _check_coverage(tensors, data_size, name)
    return SafetensorsHeader(
        tensors=tuple(tensors), metadata=metadata, data_offset=data_offset, data_size=data_size
    )


def _decode_json(header: bytes, name: str) -> strict_json.JsonObject:
    if not header.lstrip(_JSON_WHITESPACE).startswith(b"{"):
        raise FormatError(f"{name}: header does not start with '{{' (not a safetensors file?)")
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{name}: header is not valid UTF-8 (byte {exc.start})") from exc
    try:
        parsed = strict_json.decode(text)
    except RecursionError as exc:
        raise FormatError(f"{name}: header JSON is nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise FormatError(f"{name}: header is not valid JSON: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(parsed, strict_json.JsonObject):
        raise FormatError(f"{name}: header must be a JSON object, got {type(parsed).__name__}")
    return parsed


def _parse_metadata(raw: strict_json.JsonObject, name: str) -> dict[str, str]:
    """Pop ``__metadata__`` (a struct field to serde: giving it twice is an error)."""
    if _METADATA_KEY in raw.repeated():
        raise FormatError(f"{name}: header has duplicate key {_METADATA_KEY!r}")
    value = raw.pop(_METADATA_KEY, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"{name}: __metadata__ must be an object of strings")
    for key, item in [*value.items(), *getattr(value, "shadowed", ())]:
        strict_json.check_text(key, f"__metadata__ key {key!r:.60}")
        if not isinstance(item, str):
            raise FormatError(f"{name}: __metadata__[{key!r}] must be a string, got {item!r:.60}")
        strict_json.check_text(item, f"__metadata__[{key!r:.60}]")
    return dict(value)


def _typed_entry(key: str, value: Any, name: str) -> TensorInfo:
    """Check one tensor entry's types as serde does: fields, dtype, unsigned 64-bit numbers."""
    strict_json.check_text(key, "tensor name")
    if not isinstance(value, strict_json.JsonObject):
        raise FormatError(f"{_where(name, key)}: entry must be an object")
    if value.shadowed or len(value) != len(_TENSOR_KEYS):  # the rare shapes, checked in full
        _check_fields(key, value, name)
    try:
        dtype, shape, offsets = DType(value["dtype"]), value["shape"], value["data_offsets"]
    except (ValueError, TypeError, KeyError):
        _check_fields(key, value, name)
        raise FormatError(f"{_where(name, key)}: unknown dtype {value['dtype']!r:.40}") from None
    if not (type(shape) is list and all(strict_json.is_u64(dim) for dim in shape)):
        raise FormatError(
            f"{_where(name, key)}: shape {shape!r:.80} must be a list of "
            "non-negative integers below 2**64"
        )
    if not (type(offsets) is list and len(offsets) == 2):
        raise FormatError(f"{_where(name, key)}: data_offsets must be a list of two integers")
    start, end = offsets
    if not (strict_json.is_u64(start) and strict_json.is_u64(end)):
        raise FormatError(
            f"{_where(name, key)}: data_offsets {offsets!r:.80} must be two integers in [0, 2**64)"
        )
    return TensorInfo(name=key, dtype=dtype, shape=tuple(shape), start=start, end=end)


def _check_fields(key: str, value: strict_json.JsonObject, name: str) -> None:
    """Fields given twice, missing, or unknown (ignored, but held to serde's lexical rules)."""
    repeated = _TENSOR_KEYS & value.repeated()
    if repeated:
        raise FormatError(f"{_where(name, key)}: entry gives {sorted(repeated)[0]!r} twice")
    missing = _TENSOR_KEYS - value.keys()
    if missing:
        raise FormatError(
            f"{_where(name, key)}: entry must have keys dtype, shape, data_offsets; "
            f"missing {sorted(missing)}"
        )
    unknown = [(field_name, value[field_name]) for field_name in value.keys() - _TENSOR_KEYS]
    for field_name, item in [*unknown, *value.shadowed]:
        strict_json.check_free_value(item, 2, f"tensor {key!r:.60}: {field_name!r:.40}")


def _where(name: str, key: str) -> str:
    return f"{name}: tensor {key!r}"


def _sized(tensor: TensorInfo, name: str) -> TensorInfo:
    """Check that the shape's size fits 64 bits (as safetensors counts) and fills the span."""
    where = _where(name, tensor.name)
    dtype, shape, start, end = tensor.dtype, tensor.shape, tensor.start, tensor.end
    if not start <= end:
        raise FormatError(f"{where}: data_offsets [{start}, {end}) are not an ordered range")
    count = 1
    for dim in shape:  # the running product, as safetensors checks it, not just the total
        count *= dim
        if count >= strict_json.U64_LIMIT:
            raise FormatError(f"{where}: shape {list(shape)} overflows a 64-bit element count")
    if count * dtype.bits >= strict_json.U64_LIMIT:
        raise FormatError(f"{where}: {count} elements of {dtype.value} overflow a 64-bit size")
    expected = dtype.nbytes(count)
    if expected is None:
        raise FormatError(f"{where}: {shape} elements of {dtype.value} do not fill whole bytes")
    if end - start != expected:
        raise FormatError(
            f"{where}: shape {list(shape)} of {dtype.value} needs {expected} bytes "
            f"but data_offsets [{start}, {end}) hold {end - start}"
        )
    return tensor


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
