"""On/off settings as people write them (``1``, ``on``, ``yes``; ``0``, ``off``, ``no``),
one vocabulary for every ``PAGEFAULT_*`` switch and config flag."""

from __future__ import annotations

__all__ = ["OFF_WORDS", "ON_WORDS", "parse_switch"]

OFF_WORDS = frozenset({"0", "off", "false", "no", "none", ""})
ON_WORDS = frozenset({"1", "on", "true", "yes"})


def parse_switch(value: object) -> bool:
    """Whether ``value`` says on; ``ValueError`` naming the accepted words otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in OFF_WORDS | ON_WORDS:
        raise ValueError(f"{value!r} is not on/off (use one of {sorted(ON_WORDS | OFF_WORDS)})")
    return text in ON_WORDS
