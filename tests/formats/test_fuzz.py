"""Property tests: generated headers and truncations only ever give ``FormatError``, in
bounded time and memory, and pagefault accepts exactly what safetensors accepts."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import pagefault
from pagefault.errors import FormatError, PagefaultError
from pagefault.formats import DType, parse_header, parse_header_length, parse_index
from pagefault.formats import safetensors as safetensors_format
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

# Raw JSON text, so that what Python's json would smooth over reaches both parsers:
# -0, exponents, numbers past u64, NaN, lone surrogates, repeated keys, deep nesting.
# Most cases start from a valid file and change one or two things, so both outcomes occur.
odd_numbers = st.sampled_from(
    [
        *("-0", "-1", "1e0", "1.0", "4294967296", "18446744073709551615", "18446744073709551616"),
        *("9223372036854775808", "1e400", "NaN", "9" * 30),
    ]
)
# Valid choices are listed several times so that most files get past the lexer.
good_names = ['"a"', '"b"', '"c"', '"\\ud83d\\ude00"', '""']
names = st.sampled_from(good_names * 4 + ['"\\ud800"', '"\\udc00x"'])
good_values = ["1", "-0", "null", '"x"', "[[[]]]", "1e300", "9" * 30]
free_values = st.sampled_from(
    good_values * 3 + ['"\\ud800"', "1e400", "NaN", "[" * 130 + "]" * 130]
)
fuzz_dtypes = st.sampled_from([d.value for d in DType] + ["f32"])


@st.composite
def header_texts(draw: st.DrawFn) -> tuple[str, int]:
    """A header as JSON text, and how many data bytes follow it."""
    parts, offset = [], 0
    for _ in range(draw(st.integers(0, 3))):
        dtype = draw(fuzz_dtypes)
        dims = draw(st.lists(st.integers(0, 4), max_size=3))
        bits = DType(dtype).bits if dtype in {d.value for d in DType} else 32
        size = -(-bits * math.prod(dims) // 8)
        shape = [str(dim) for dim in dims]
        offsets = [str(offset), str(offset + size)]
        offset += size
        if draw(st.sampled_from([False] * 4 + [True])):
            numbers = draw(st.sampled_from([shape, offsets]))
            if numbers:
                numbers[draw(st.integers(0, len(numbers) - 1))] = draw(odd_numbers)
        fields = [
            f'"dtype":"{dtype}"',
            f'"shape":[{",".join(shape)}]',
            f'"data_offsets":[{",".join(offsets)}]',
        ]
        fields += [f'"x":{draw(free_values)}' for _ in range(draw(st.integers(0, 2)))]
        if draw(st.sampled_from([False] * 6 + [True])):
            fields.append(draw(st.sampled_from(fields)))  # a repeated field
        parts.append(f"{draw(names)}:{{{','.join(draw(st.permutations(fields)))}}}")
    if draw(st.booleans()):
        value = draw(st.sampled_from(['"v"'] * 8 + ["null", "1", '"\\udfff"']))
        parts.append('"__metadata__":{"k":' + value + "}")
    lead = draw(st.sampled_from(["", "", "", " ", "\n\t", "\x0c"]))
    data_size = offset + draw(st.sampled_from([0, 0, 0, 0, 0, 1, -1]))
    return lead + "{" + ",".join(draw(st.permutations(parts))) + "}", max(0, data_size)


def try_parse(data: bytes) -> None:
    try:
        length = parse_header_length(data[:8], file_size=len(data), name="fuzz")
        parse_header(data[8 : 8 + length], file_size=len(data), name="fuzz")
    except FormatError:
        pass


def parse(data: bytes) -> None:
    length = parse_header_length(data[:8], file_size=len(data), name="fuzz")
    parse_header(data[8 : 8 + length], file_size=len(data), name="fuzz")


def reference_accepts(path: Path) -> bool | None:
    """True/False: safetensors loads/refuses the file; None: valid header, torch can't hold it."""
    try:
        handle = safe_open(path, "pt")
    except Exception:
        return False
    with handle:
        try:
            for key in handle.keys():  # noqa: SIM118
                handle.get_tensor(key)
        except Exception:
            return None
    return True


def pagefault_accepts(path: Path) -> bool | None:
    try:
        pagefault.inspect(path)
    except FormatError:
        return False
    try:
        pagefault.load(path, mmap=False)
    except PagefaultError:
        return None
    return True


@settings(
    max_examples=600, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow]
)
@given(header_texts())
def test_accepts_exactly_what_safetensors_accepts(case: tuple[str, int]) -> None:
    text, data_size = case
    data = raw_file(text.encode(), bytes(i % 256 for i in range(data_size)))
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "fuzz.safetensors"
        path.write_bytes(data)
        assert pagefault_accepts(path) == reference_accepts(path), text


@settings(max_examples=400, deadline=timedelta(seconds=2))
@given(headers, st.binary(max_size=96))
def test_structured_headers_cost_bounded_memory(header: dict, data: bytes) -> None:
    body = raw_file(header, data)
    tracemalloc.start()
    try:
        try_parse(body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (1 << 20) + 64 * len(body)  # never sized by the dims or offsets a file claims


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    try_parse(data)


VALID = raw_file(
    {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "I8", "shape": [3], "data_offsets": [8, 11]},
    },
    bytes(11),
)


def check_truncation(cut: int) -> None:
    """A file cut short by ``cut`` bytes must be refused; the whole file must parse."""
    if cut == 0:
        parse(VALID)
        return
    with pytest.raises(FormatError):
        parse(VALID[: len(VALID) - cut])


@pytest.mark.parametrize("cut", range(len(VALID) + 1))
def test_every_truncation_of_a_valid_file_is_rejected(cut: int) -> None:
    check_truncation(cut)


def test_the_truncation_check_fails_on_a_parser_that_ignores_the_data_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(safetensors_format, "_check_coverage", lambda *args: None)
    with pytest.raises(pytest.fail.Exception):
        check_truncation(1)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_index_parsing(value: object) -> None:
    with contextlib.suppress(FormatError):
        parse_index(json.dumps(value).encode(), name="idx")
