"""Build safetensors headers and write files atomically (temp name, fsync, rename)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pagefault.errors import FormatError
from pagefault.formats import strict_json
from pagefault.formats.dtypes import DType
from pagefault.formats.safetensors import HEADER_PREFIX_BYTES, MAX_HEADER_BYTES
from pagefault.system.files import write_atomic

__all__ = ["TensorSpec", "build_header", "write_safetensors"]

_ALIGNMENT = 8  # pad the header so the data section starts 8-byte aligned


@dataclass(frozen=True)
class TensorSpec:
    """What a writer needs to know about a tensor before its bytes."""

    name: str
    dtype: DType
    shape: tuple[int, ...]


def build_header(specs: Sequence[TensorSpec], metadata: Mapping[str, str] | None = None) -> bytes:
    """Return prefix + padded JSON header for tensors laid out back to back in ``specs`` order."""
    entries: dict[str, object] = {}
    if metadata:
        for key, value in metadata.items():
            _check_name(key, "metadata key")
            _check_name(value, f"metadata value of {key!r}")
        entries["__metadata__"] = dict(metadata)
    offset = 0
    for spec in specs:
        numel = 1
        for dim in spec.shape:
            numel *= dim
        size = spec.dtype.nbytes(numel)
        if size is None:
            raise FormatError(
                f"tensor {spec.name!r}: {numel} x {spec.dtype.value} is not whole bytes"
            )
        _check_name(spec.name, "tensor name")
        if spec.name in entries:
            raise FormatError(f"tensor {spec.name!r} appears twice")
        entries[spec.name] = {
            "dtype": spec.dtype.value,
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    body = json.dumps(entries, separators=(",", ":")).encode()
    body += b" " * (-(HEADER_PREFIX_BYTES + len(body)) % _ALIGNMENT)
    if len(body) > MAX_HEADER_BYTES:
        raise FormatError(f"header would be {len(body)} bytes, over the {MAX_HEADER_BYTES} limit")
    return struct.pack("<Q", len(body)) + body


def _check_name(text: str, what: str) -> None:
    """Refuse what readers would reject: a lone surrogate has no UTF-8 form, and the
    ``\\ud800`` escape ``json`` writes for it fails in safetensors and serde_json."""
    try:
        strict_json.check_text(text, f"{what} {text!r:.60}")
    except strict_json.JsonRuleError as exc:
        raise FormatError(f"{exc}; other safetensors readers could not open the file") from None


def write_safetensors(
    path: str | os.PathLike[str],
    specs: Sequence[TensorSpec],
    data: Iterable[bytes | memoryview],
    metadata: Mapping[str, str] | None = None,
) -> None:
    """Write a safetensors file atomically; ``data`` yields the tensors' bytes in ``specs`` order.

    The bytes are streamed, so a shard never has to fit in memory; their total must
    match what ``specs`` describe or nothing is written.
    """
    header = build_header(specs, metadata)
    expected = _data_size(header)

    def chunks() -> Iterable[bytes | memoryview]:
        yield header
        written = 0
        for chunk in data:
            written += memoryview(chunk).nbytes
            if written > expected:
                break
            yield chunk
        if written != expected:
            raise FormatError(f"{path}: tensors described {expected} bytes but data gave {written}")

    write_atomic(path, chunks())


def _data_size(header: bytes) -> int:
    spans = json.loads(header[HEADER_PREFIX_BYTES:])
    spans.pop("__metadata__", None)
    return max((entry["data_offsets"][1] for entry in spans.values()), default=0)
