"""Map safetensors dtypes and shapes to torch's and back: the one table tests import too.

Two things differ between the formats. torch packs ``F4`` two values to a byte
(``float4_e2m1fn_x2``), so its last dim is half the file's, as in safetensors' own torch
loader. And torch sizes are int64 where safetensors' are u64, so a zero-element tensor
may name dims torch cannot hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pagefault.errors import FormatError, SinkError
from pagefault.formats import DType

__all__ = ["TORCH_NAMES", "file_shape", "from_torch_dtype", "to_torch_dtype", "torch_shape"]

_TORCH_DIM_LIMIT = 2**63

# F6_E2M3 and F6_E3M2 have no torch dtype yet; loading one is a typed SinkError.
TORCH_NAMES: dict[DType, str] = {
    DType.BOOL: "bool",
    DType.U8: "uint8",
    DType.I8: "int8",
    DType.F8_E5M2: "float8_e5m2",
    DType.F8_E4M3: "float8_e4m3fn",
    DType.F8_E8M0: "float8_e8m0fnu",
    DType.F8_E4M3FNUZ: "float8_e4m3fnuz",
    DType.F8_E5M2FNUZ: "float8_e5m2fnuz",
    DType.F4: "float4_e2m1fn_x2",
    DType.I16: "int16",
    DType.U16: "uint16",
    DType.F16: "float16",
    DType.BF16: "bfloat16",
    DType.I32: "int32",
    DType.U32: "uint32",
    DType.F32: "float32",
    DType.C64: "complex64",
    DType.F64: "float64",
    DType.I64: "int64",
    DType.U64: "uint64",
}


def to_torch_dtype(dtype: DType, *, tensor: str = "") -> torch.dtype:
    """Return the torch dtype for ``dtype``, or raise ``SinkError`` if this torch lacks it."""
    found = getattr(torch, TORCH_NAMES.get(dtype, ""), None)
    if not isinstance(found, torch.dtype):
        where = f"tensor {tensor!r}: " if tensor else ""
        raise SinkError(
            f"{where}dtype {dtype.value} has no torch equivalent in torch {torch.__version__}"
        )
    return found


def from_torch_dtype(dtype: torch.dtype, *, tensor: str = "") -> DType:
    """Return the safetensors dtype for a torch dtype, or raise ``SinkError`` if none exists."""
    for candidate, name in TORCH_NAMES.items():
        if getattr(torch, name, None) == dtype:
            return candidate
    where = f"tensor {tensor!r}: " if tensor else ""
    raise SinkError(f"{where}torch dtype {dtype} has no safetensors equivalent")


def torch_shape(dtype: DType, shape: Sequence[int], *, tensor: str) -> tuple[int, ...]:
    """The shape torch gives a tensor the file describes as ``shape`` of ``dtype``."""
    too_big = next((dim for dim in shape if dim >= _TORCH_DIM_LIMIT), None)
    if too_big is not None:
        raise FormatError(
            f"tensor {tensor!r}: dim {too_big} of shape {list(shape)} exceeds torch's "
            "int64 sizes (safetensors allows it for empty tensors; torch cannot hold it)"
        )
    if dtype is not DType.F4:
        return tuple(shape)
    if not shape or shape[-1] % 2:
        raise FormatError(
            f"tensor {tensor!r}: F4 shape {list(shape)} needs an even last dim: torch packs "
            "two F4 values per byte (float4_e2m1fn_x2)"
        )
    return (*shape[:-1], shape[-1] // 2)


def file_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """The shape a file records for ``tensor`` (F4 counts values, torch counts pairs)."""
    shape = tuple(tensor.shape)
    if tensor.dtype == getattr(torch, TORCH_NAMES[DType.F4], None) and shape:
        return (*shape[:-1], shape[-1] * 2)
    return shape
