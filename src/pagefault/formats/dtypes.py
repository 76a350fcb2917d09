"""The safetensors dtype table: names, bit widths. No torch here; the sinks map to torch."""

from __future__ import annotations

import enum

__all__ = ["DType"]


class DType(enum.Enum):
    """A safetensors dtype; the value is the name used in file headers."""

    BOOL = "BOOL"
    F4 = "F4"
    F6_E2M3 = "F6_E2M3"
    F6_E3M2 = "F6_E3M2"
    U8 = "U8"
    I8 = "I8"
    F8_E5M2 = "F8_E5M2"
    F8_E4M3 = "F8_E4M3"
    F8_E8M0 = "F8_E8M0"
    F8_E4M3FNUZ = "F8_E4M3FNUZ"
    F8_E5M2FNUZ = "F8_E5M2FNUZ"
    I16 = "I16"
    U16 = "U16"
    F16 = "F16"
    BF16 = "BF16"
    I32 = "I32"
    U32 = "U32"
    F32 = "F32"
    C64 = "C64"
    F64 = "F64"
    I64 = "I64"
    U64 = "U64"

    @property
    def bits(self) -> int:
        """Width of one element in bits (sub-byte types pack several per byte)."""
        return _BITS[self]

    def nbytes(self, numel: int) -> int | None:
        """Bytes that ``numel`` elements occupy, or None when they do not fill whole bytes."""
        total_bits = numel * self.bits
        return total_bits // 8 if total_bits % 8 == 0 else None


_BITS: dict[DType, int] = {
    DType.BOOL: 8,
    DType.F4: 4,
    DType.F6_E2M3: 6,
    DType.F6_E3M2: 6,
    DType.U8: 8,
    DType.I8: 8,
    DType.F8_E5M2: 8,
    DType.F8_E4M3: 8,
    DType.F8_E8M0: 8,
    DType.F8_E4M3FNUZ: 8,
    DType.F8_E5M2FNUZ: 8,
    DType.I16: 16,
    DType.U16: 16,
    DType.F16: 16,
    DType.BF16: 16,
    DType.I32: 32,
    DType.U32: 32,
    DType.F32: 32,
    DType.C64: 64,
    DType.F64: 64,
    DType.I64: 64,
    DType.U64: 64,
}
