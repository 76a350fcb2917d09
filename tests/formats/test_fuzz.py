"""Property-based fuzzing: arbitrary headers and truncations only ever yield FormatError."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pagefault.errors import FormatError
from pagefault.formats import parse_header, parse_header_length, parse_index
from tests.helpers import raw_file

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
dtypes = st.sampled_from(["F32", "BF16", "BOOL", "I64", "F8_E4M3", "F4", "X"])
entries = st.fixed_dictionaries(
    {
        "dtype": dtypes,
        "shape": st.lists(st.integers(-2, 6), max_size=3),
        "data_offsets": st.lists(st.integers(-4, 80), min_size=0, max_size=3),
    }
)
headers = st.dictionaries(st.text(min_size=1, max_size=5), entries | json_values, max_size=5)


def try_parse(data: bytes) -> None:
    try:
        length = parse_header_length(data[:8], file_size=len(data), name="fuzz")
        parse_header(data[8 : 8 + length], file_size=len(data), name="fuzz")
    except FormatError:
        pass


@settings(max_examples=400, deadline=None)
@given(headers, st.binary(max_size=96))
def test_structured_headers(header: dict, data: bytes) -> None:
    try_parse(raw_file(header, data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    try_parse(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 60))
def test_every_truncation_of_a_valid_file(cut: int) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I8", "shape": [3], "data_offsets": [8, 11]},
    }
    data = raw_file(header, bytes(11))
    try_parse(data[: len(data) - cut] if cut else data)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_index_parsing(value: object) -> None:
    with contextlib.suppress(FormatError):
        parse_index(json.dumps(value).encode(), name="idx")
