"""The private arena: huge pages by default, off with PAGEFAULT_HUGE_PAGES=0."""

from __future__ import annotations

import pytest
import torch

from pagefault.errors import SinkError
from pagefault.tensors.memory import HUGE_PAGES_ENV, Arena, huge_pages_wanted


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("1", True), ("0", False), ("off", False), (" No ", False)],
)
def test_huge_pages_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv(HUGE_PAGES_ENV, raising=False)
    else:
        monkeypatch.setenv(HUGE_PAGES_ENV, value)
    assert huge_pages_wanted() is expected
    if not expected:
        arena = Arena(4 << 20)
        assert not arena.huge_pages and arena.pages == "small-pages"


def test_a_value_that_is_not_on_or_off_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HUGE_PAGES_ENV, "maybe")
    with pytest.raises(SinkError, match=r"PAGEFAULT_HUGE_PAGES: 'maybe' is not on/off"):
        Arena(4 << 20)


@pytest.mark.parametrize("value", ["0", "1"])
def test_arena_tensors_view_its_memory(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(HUGE_PAGES_ENV, value)
    arena = Arena(4 << 20)
    tensor = arena.tensor(64, torch.float32, (4,))
    arena.view(64, 16)[:] = torch.arange(4, dtype=torch.float32).numpy().tobytes()
    assert tensor.tolist() == [0.0, 1.0, 2.0, 3.0]
