"""Byte sizes as people write them: ``8GiB``, ``500MB``, ``1.5T``, or a plain count."""

from __future__ import annotations

import re

__all__ = ["parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?)?B?\s*$", re.IGNORECASE)
_DECIMAL = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
_BINARY = {"KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}


def parse_size(text: str | int) -> int:
    """The byte count ``text`` names; ``ValueError`` naming the examples otherwise."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 8GiB, 500MB, 1073741824)")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    return int(number * (_BINARY.get(unit) or _DECIMAL[unit]))
