"""Build safetensors headers and write files atomically (temp name, fsync, rename)."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pagefault.errors import FormatError
from pagefault.formats.dtypes import DType
from pagefault.formats.safetensors import HEADER_PREFIX_BYTES, MAX_HEADER_BYTES

__all__ = ["TensorSpec", "build_header", "fsync_directory", "write_atomic", "write_safetensors"]

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


def write_atomic(path: str | os.PathLike[str], chunks: Iterable[bytes | memoryview]) -> None:
    """Write ``chunks`` to a temp file beside ``path``, fsync, then rename over it.

    A crash at any point leaves either the old file or the new one, never a torn one.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make renames and creations inside ``path`` durable."""
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
