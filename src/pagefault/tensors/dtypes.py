"""Map safetensors dtypes to torch dtypes and back."""

from __future__ import annotations

import torch

from pagefault.errors import SinkError
from pagefault.formats import DType

__all__ = ["from_torch_dtype", "to_torch_dtype"]

_TORCH_NAMES: dict[DType, str] = {
    DType.BOOL: "bool",
    DType.U8: "uint8",
    DType.I8: "int8",
    DType.F8_E5M2: "float8_e5m2",
    DType.F8_E4M3: "float8_e4m3fn",
    DType.F8_E8M0: "float8_e8m0fnu",
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
    found = getattr(torch, _TORCH_NAMES.get(dtype, ""), None)
    if not isinstance(found, torch.dtype):
        where = f"tensor {tensor!r}: " if tensor else ""
        raise SinkError(
            f"{where}dtype {dtype.value} has no torch equivalent in torch {torch.__version__}"
        )
    return found


def from_torch_dtype(dtype: torch.dtype, *, tensor: str = "") -> DType:
    """Return the safetensors dtype for a torch dtype, or raise ``SinkError`` if none exists."""
    for candidate, name in _TORCH_NAMES.items():
        if getattr(torch, name, None) == dtype:
            return candidate
    where = f"tensor {tensor!r}: " if tensor else ""
    raise SinkError(f"{where}torch dtype {dtype} has no safetensors equivalent")
