"""What this machine offers a process: CPUs it may run on, memory figures from /proc."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MEMINFO", "cpu_count", "meminfo_fields"]

MEMINFO = Path("/proc/meminfo")


def cpu_count() -> int:
    """CPUs this process may run on (cgroup/affinity aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def meminfo_fields(meminfo: Path = MEMINFO) -> dict[str, int]:
    """The leading integer of every /proc/meminfo line (kB, or a count), by name; empty
    when unreadable."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        number = value.split()[0] if value.split() else ""
        if number.isdigit():
            fields[key] = int(number)
    return fields
