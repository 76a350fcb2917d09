"""Builders shared by the tests: raw safetensors bytes, and files written with our writer."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from pagefault.formats import TensorSpec, write_safetensors
from pagefault.manifest import MANIFEST_NAME, PieceHasher, PieceManifest
from pagefault.tensors.dtypes import TORCH_NAMES, file_shape

# Every dtype this torch shares with safetensors, from pagefault's own table.
TORCH_TO_ST = {
    getattr(torch, name): dtype
    for dtype, name in TORCH_NAMES.items()
    if isinstance(getattr(torch, name, None), torch.dtype)
}


def raw_file(header: object, data: bytes = b"", *, pad: bytes = b"") -> bytes:
    """Bytes of a (possibly hostile) safetensors file with this JSON header."""
    body = (header if isinstance(header, bytes) else json.dumps(header).encode()) + pad
    return struct.pack("<Q", len(body)) + body + data


def random_tensor(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Deterministic tensor with arbitrary bit patterns (NaNs included for floats)."""
    gen = torch.Generator().manual_seed(seed)
    nbytes = dtype.itemsize * int(torch.tensor(shape).prod().item() if shape else 1)
    raw = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=gen)
    if dtype == torch.bool:
        raw = raw % 2
    return raw.view(dtype).reshape(shape)


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata=None) -> Path:
    """Write ``tensors`` in dict order with no alignment padding (offsets may be odd)."""
    specs = [TensorSpec(n, TORCH_TO_ST[t.dtype], file_shape(t)) for n, t in tensors.items()]
    data = [
        t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        for t in tensors.values()
    ]
    write_safetensors(path, specs, data, metadata)
    return path


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN-safe), shapes and dtypes included."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return (
        bool(
            torch.equal(
                a.contiguous().view(-1).view(torch.uint8), b.contiguous().view(-1).view(torch.uint8)
            )
        )
        if a.numel()
        else True
    )


def verify_manifest(directory: Path) -> list[str]:
    """Re-hash every file the piece manifest lists; return their names (raises on mismatch)."""
    manifest = PieceManifest.from_json((directory / MANIFEST_NAME).read_bytes(), name="m")
    for entry in manifest.files:
        hasher = PieceHasher(manifest.piece_size, manifest.algorithm)
        hasher.update((directory / entry.name).read_bytes())
        assert hasher.finish(entry.name) == entry, f"{entry.name} does not match its manifest"
    return [entry.name for entry in manifest.files]


def tiny_llama_config(transformers: Any, **overrides: Any) -> Any:
    """A 2-layer Llama config small enough for unit tests; ``overrides`` change any field."""
    settings: dict[str, Any] = {
        "vocab_size": 128,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    }
    return transformers.LlamaConfig(**{**settings, **overrides})


def flip_byte(path: Path, offset: int) -> None:
    """Damage one bit of a file in place, as a disk or a hostile origin might."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident_share(path: Path) -> float:
    """Share of the file's pages in the page cache (mincore on a copy-on-write mapping of
    it, never written, so every page it reports is the page cache's)."""
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vector = (ctypes.c_ubyte * pages)()
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mapping:
        first = ctypes.c_char.from_buffer(mapping)
        assert _libc.mincore(ctypes.addressof(first), size, vector) == 0, ctypes.get_errno()
        del first  # release the buffer export so the mapping can close
    return (pages - bytes(vector).count(0)) / pages


def dropped(path: Path) -> Path:
    """``path`` written out and evicted from the page cache (skip where that can't be done)."""
    with path.open("rb+") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if resident_share(path) > 0.1:
        pytest.skip(f"the page cache of {path.parent} does not drop pages (tmpfs?)")
    return path


class FakeClock:
    """A monotonic clock that moves only when a test sets ``now``: timing policies are
    tested without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now
