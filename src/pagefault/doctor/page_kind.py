"""Which fresh memory a private load asks for: the kind this node fills fastest now.

Faulting fresh pages bounds a private load, and which kind is fastest is a property of
the node and its recent history, not a constant: on the development VM transparent huge
pages filled at 0.9 GB/s and 4 KiB pages at 3.9 GB/s in one hour, the reverse after
other predecessors (docs/benchmarks.md). So the choice comes from measurement: a probe
of each kind (256 MiB, about 0.3 s) kept beside the doctor's record for ``STALE_S`` and
run again when older; huge pages must win it by ``THP_MARGIN``. A reserved pool with
room always comes first (reserved pages never go back to the host: the fastest fresh
memory measured, docs/benchmarks.md).
``PAGEFAULT_HUGE_PAGES`` set by hand turns the policy off.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pagefault.doctor import probes
from pagefault.doctor.records import record_path
from pagefault.system.files import write_atomic

__all__ = [
    "PROBE_BYTES",
    "STALE_S",
    "THP_MARGIN",
    "choose",
    "fastest_pages",
    "page_kinds_path",
    "remember_kinds",
]

STALE_S = 600.0
PROBE_BYTES = 256 << 20
# Transparent huge pages only when the probe finds them clearly faster: on the development
# VM 4 KiB pages filled at 2.6-3.5 GB/s every time while THP swung between 1.1 and 11.7
# GB/s for the same 2 GiB, and a 64 MiB probe favoured THP even when 2 GiB then took
# 1.1 GB/s; at 256 MiB and this margin the probe picked right or nearly (docs/benchmarks.md).
THP_MARGIN = 1.5
_CHOICES = ("small-pages", "huge-pages")  # the reserved pool, when it has room, comes first


def page_kinds_path() -> Path:
    record = record_path()
    return record.with_name(f"{record.stem}.pages.json")


def fastest_pages(now: float | None = None) -> str | None:
    """``small-pages`` or ``huge-pages``: the kind to ask for when the reserved pool has
    no room (with room, the arena takes the pool); None when a person chose by hand or
    nothing could be measured (the arena's default)."""
    from pagefault.tensors.memory import HUGE_PAGES_ENV  # noqa: PLC0415 - torch

    if HUGE_PAGES_ENV in os.environ:
        return None
    now = time.time() if now is None else now
    figures = _read(page_kinds_path())
    if figures is None or now - figures.get("measured_at", 0.0) > STALE_S:
        try:
            figures = {"measured_at": now, "fresh": _probe()}
        except OSError:
            return None
        _write(page_kinds_path(), figures)
    return choose(figures["fresh"])


def choose(fresh: Mapping[str, float | None]) -> str | None:
    """The kind to ask for given fill rates by kind (GB/s): huge pages only when they
    win by ``THP_MARGIN``; None when neither was measured."""
    small, huge = (fresh.get(kind) or 0.0 for kind in _CHOICES)
    if not small and not huge:
        return None
    return "huge-pages" if huge > THP_MARGIN * small else "small-pages"


def remember_kinds(fresh: dict[str, float | None], measured_at: float) -> None:
    """The doctor's own figures serve as the policy's until they go stale."""
    _write(page_kinds_path(), {"measured_at": measured_at, "fresh": fresh})


def _probe() -> dict[str, float | None]:
    with probes.hot_sample(PROBE_BYTES) as hot:
        return {kind: probes.fresh_fill([hot], kind) for kind in _CHOICES}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("fresh"), dict) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, [json.dumps(data).encode()], durable=False)
    except OSError:
        pass  # a read-only cache directory: measure again next time
