"""Decode JSON by the rules of serde_json, the parser behind the reference safetensors.

Python's ``json`` accepts things serde_json rejects (``NaN``, ``1e400``, lone surrogate
escapes, nesting past 127 levels) and reads things differently (``-0`` is an integer
here and a float there; a repeated key silently wins). A header pagefault accepts must
be one every other safetensors reader accepts, so this module decodes with hooks that
keep serde's reading, and leaves the schema rules (which keys, which types) to
``formats/safetensors.py``. Every problem is a :class:`JsonRuleError` (a ``ValueError``)
that the caller turns into a ``FormatError`` naming the file.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "U64_LIMIT",
    "JsonObject",
    "JsonRuleError",
    "check_free_value",
    "check_text",
    "decode",
    "is_u64",
]

# serde_json's default recursion limit: 128 levels, of which 127 can be containers.
MAX_DEPTH = 127
U64_LIMIT = 2**64  # safetensors sizes and counts are u64
_I64_MIN = -(2**63)
# Longest integer literal that can still fit u64/i64 (sign included); longer ones are
# floats to serde, and Python's int() refuses literals past 4,300 digits anyway.
_MAX_INT_LITERAL = 21


class JsonRuleError(ValueError):
    """The text is JSON Python would take, but serde_json (and so safetensors) would not."""


class JsonObject(dict[str, Any]):
    """A decoded JSON object; ``shadowed`` holds earlier values of keys given twice.

    serde keeps the last value of a repeated map key, but still type-checks the earlier
    ones, and rejects a repeated *struct field*: the schema layer needs both facts.
    """

    shadowed: tuple[tuple[str, Any], ...] = ()

    def repeated(self) -> set[str]:
        return {key for key, _ in self.shadowed}


def decode(text: str) -> Any:
    """Parse ``text`` as serde_json would; raises ``JsonRuleError`` or ``JSONDecodeError``."""
    return json.loads(
        text,
        object_pairs_hook=_object,
        parse_int=_integer,
        parse_float=_float,
        parse_constant=_constant,
    )


def is_u64(value: Any) -> bool:
    """Whether serde would read ``value`` as a ``usize`` (``-0`` is a float there)."""
    return type(value) is int and 0 <= value < U64_LIMIT


def check_text(text: str, what: str) -> None:
    """Reject a string holding a lone UTF-16 surrogate (from a ``\\ud800`` escape)."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonRuleError(
            f"{what} holds a lone surrogate (\\u{ord(text[exc.start]):04x}), which is not Unicode"
        ) from None


def check_free_value(value: Any, depth: int, what: str) -> None:
    """Apply serde's lexical rules to a value the schema ignores, found at ``depth``.

    The schema layer never looks inside unknown fields, but serde still rejects them for
    deep nesting and lone surrogates; walking them here keeps both readers in step.
    """
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            check_text(item, what)
            continue
        if not isinstance(item, list | dict):
            continue
        if level + 1 > MAX_DEPTH:
            raise JsonRuleError(f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            pairs = list(item.items()) + list(getattr(item, "shadowed", ()))
            for key, _ in pairs:
                check_text(key, what)
            stack.extend((child, level + 1) for _, child in pairs)
        else:
            stack.extend((child, level + 1) for child in item)


def _object(pairs: list[tuple[str, Any]]) -> JsonObject:
    result = JsonObject()
    shadowed = []
    for key, value in pairs:
        if key in result:
            shadowed.append((key, result[key]))
        result[key] = value
    if shadowed:
        result.shadowed = tuple(shadowed)
    return result


def _integer(literal: str) -> int | float:
    if literal == "-0":
        return -0.0  # serde reads "-0" as the float -0.0, so it is no size or offset
    if len(literal) <= _MAX_INT_LITERAL:
        value = int(literal)
        if _I64_MIN <= value < U64_LIMIT:
            return value
    return _float(literal)  # outside i64/u64: a float to serde, never a size


def _float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise JsonRuleError(
            f"number {literal[:24]}{'...' if len(literal) > 24 else ''} is out of range"
        )
    return value


def _constant(literal: str) -> float:
    raise JsonRuleError(f"{literal} is not a JSON value")
