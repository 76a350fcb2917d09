"""Strict header parsing: valid files parse, every hostile file gives a precise FormatError."""

from __future__ import annotations

import struct

import pytest

from pagefault.errors import FormatError
from pagefault.formats import MAX_HEADER_BYTES, DType, parse_header, parse_header_length
from tests.helpers import raw_file


def parse(data: bytes, name: str = "x.safetensors"):
    length = parse_header_length(data[:8], file_size=len(data), name=name)
    return parse_header(data[8 : 8 + length], file_size=len(data), name=name)


def test_valid_header_keeps_metadata_and_sorts_by_offset() -> None:
    header = {
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [2, 10]},
        "a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]},
        "__metadata__": {"format": "pt"},
    }
    parsed = parse(raw_file(header, bytes(10), pad=b"   "))
    assert [t.name for t in parsed.tensors] == ["a", "b"]
    assert parsed.metadata == {"format": "pt"}
    assert parsed.tensors[1].dtype is DType.F32 and parsed.tensors[1].shape == (2,)
    assert parsed.data_size == 10


def test_every_dtype_is_known() -> None:
    for dtype in DType:
        shape = [8]
        size = dtype.nbytes(8)
        assert size is not None
        header = {"t": {"dtype": dtype.value, "shape": shape, "data_offsets": [0, size]}}
        assert parse(raw_file(header, bytes(size))).tensors[0].dtype is dtype


def test_zero_dim_and_empty_tensors() -> None:
    header = {
        "scalar": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},
        "empty": {"dtype": "F32", "shape": [0, 5], "data_offsets": [8, 8]},
    }
    parsed = parse(raw_file(header, bytes(8)))
    assert {t.name: t.nbytes for t in parsed.tensors} == {"scalar": 8, "empty": 0}


T = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
HOSTILE = {
    "absurd length": (struct.pack("<Q", 2**63) + b"{}", "exceeds"),
    "length over cap": (struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{}", "exceeds"),
    "length past eof": (struct.pack("<Q", 500) + b"{}", "past the end"),
    "tiny file": (b"\x01\x00", "too small"),
    "not json": (raw_file(b"{nope"), "not valid JSON"),
    "not utf8": (raw_file(b'{"\xff": 1}'), "UTF-8"),
    "not object": (raw_file(b"[1, 2]"), "start with"),
    "duplicate key": (raw_file(b'{"a": 1, "a": 2}'), "duplicate"),
    "unknown dtype": (raw_file({"t": {**T, "dtype": "F12"}}, bytes(8)), "unknown dtype"),
    "bool as dim": (raw_file({"t": {**T, "shape": [True, 2]}}, bytes(8)), "non-negative"),
    "negative dim": (raw_file({"t": {**T, "shape": [-2]}}, bytes(8)), "non-negative"),
    "float offsets": (raw_file({"t": {**T, "data_offsets": [0.0, 8]}}, bytes(8)), "two integers"),
    "reversed": (raw_file({"t": {**T, "data_offsets": [8, 0]}}, bytes(8)), "ordered"),
    "size mismatch": (raw_file({"t": {**T, "shape": [3]}}, bytes(8)), "needs 12 bytes"),
    "past data": (raw_file({"t": {**T, "data_offsets": [0, 8]}}, bytes(4)), "truncated"),
    "hole": (raw_file({"t": {**T, "data_offsets": [4, 12]}}, bytes(12)), "hole"),
    "overlap": (
        raw_file({"a": T, "b": {**T, "data_offsets": [4, 12]}}, bytes(12)),
        "overlaps",
    ),
    "trailing bytes": (raw_file({"t": T}, bytes(9)), "after the last tensor"),
    "extra key": (raw_file({"t": {**T, "extra": 1}}, bytes(8)), "exactly keys"),
    "metadata not str": (raw_file({"__metadata__": {"a": 1}}), "must be a string"),
    "deep nesting": (raw_file(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), "nested"),
    "huge shape product": (raw_file({"t": {**T, "shape": [2**62, 2**62]}}, bytes(8)), "needs"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_raises_format_error_naming_file(case: str) -> None:
    data, fragment = HOSTILE[case]
    with pytest.raises(FormatError) as info:
        parse(data, name="evil.safetensors")
    message = str(info.value)
    assert "evil.safetensors" in message
    assert fragment in message


def test_format_error_is_value_error() -> None:
    assert issubclass(FormatError, ValueError)
