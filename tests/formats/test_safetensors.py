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
    "duplicate metadata": (raw_file(b'{"__metadata__": {}, "__metadata__": {}}'), "duplicate"),
    "duplicate field": (
        raw_file(b'{"t": {"dtype": "F32", "dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'),
        "'dtype' twice",
    ),
    "bad shadowed entry": (
        raw_file(b'{"t": 1, "t": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}'),
        "must be an object",
    ),
    "negative zero dim": (
        raw_file(b'{"t": {"dtype": "F32", "shape": [-0], "data_offsets": [0, 0]}}'),
        "non-negative",
    ),
    "negative zero offset": (
        raw_file(b'{"t": {"dtype": "F32", "shape": [0], "data_offsets": [-0, 0]}}'),
        "two integers",
    ),
    "dim past u64": (raw_file({"t": {**T, "shape": [0, 2**64]}}), "below 2**64"),
    "lone surrogate name": (raw_file(b'{"\\ud800": 1}'), "lone surrogate"),
    "lone surrogate metadata": (raw_file(b'{"__metadata__": {"k": "\\udc00"}}'), "lone surrogate"),
    "NaN in extra field": (
        raw_file(b'{"t": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0], "x": NaN}}'),
        "not a JSON value",
    ),
    "number out of range": (
        raw_file(b'{"t": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0], "x": 1e400}}'),
        "out of range",
    ),
    "deep extra field": (
        raw_file(
            b'{"t": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0], "x": '
            + b"[" * 126
            + b"]" * 126
            + b"}}"
        ),
        "deeper than 127",
    ),
    "missing field": (raw_file({"t": {"dtype": "F32", "shape": [0]}}), "missing ['data_offsets']"),
    "byte order mark": (raw_file(b"\xef\xbb\xbf{}"), "start with"),
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
    "metadata not str": (raw_file({"__metadata__": {"a": 1}}), "must be a string"),
    "deep nesting": (raw_file(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), "nested"),
    "huge shape product": (raw_file({"t": {**T, "shape": [2**62, 2**62]}}, bytes(8)), "overflows"),
    "overflow before zero": (raw_file({"t": {**T, "shape": [2**32, 2**32, 0]}}), "overflows"),
    "bits overflow": (raw_file({"t": {**T, "shape": [2**60], "data_offsets": [0, 0]}}), "overflow"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_raises_format_error_naming_file(case: str) -> None:
    data, fragment = HOSTILE[case]
    with pytest.raises(FormatError) as info:
        parse(data, name="evil.safetensors")
    message = str(info.value)
    assert "evil.safetensors" in message
    assert fragment in message


def test_what_safetensors_accepts_beyond_the_spec_text_parses() -> None:
    """Leading whitespace, ignored extra fields, a repeated tensor name (the last wins),
    -0 in an ignored field, zero-element tensors with enormous dims, any rank."""
    text = (
        b' \n\t{"t": {"dtype": "I32", "shape": [9], "data_offsets": [0, 36], "x": [-0, 1e300]},'
        b' "t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1, "x": 2},'
        b' "z": {"dtype": "F32", "shape": [0, 4294967296, 4294967296], "data_offsets": [8, 8]},'
        b' "r": {"dtype": "U8", "shape": ['
        + b",".join([b"1"] * 300)
        + b'], "data_offsets": [8, 9]},'
        b' "__metadata__": {"k": "1", "k": "2"}}'
    )
    parsed = parse(raw_file(text, bytes(9)))
    shapes = {t.name: t.shape for t in parsed.tensors}
    assert shapes["t"] == (2,) and shapes["z"] == (0, 2**32, 2**32) and len(shapes["r"]) == 300
    assert parsed.tensors[0].dtype is DType.F32
    assert parsed.metadata == {"k": "2"}


def test_format_error_is_value_error() -> None:
    assert issubclass(FormatError, ValueError)
