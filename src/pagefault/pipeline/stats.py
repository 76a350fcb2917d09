"""Per-load measurements: bytes, wall time, and where the time went."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

from pagefault.doctor.bottleneck import Attribution, attribute
from pagefault.sources.chain import SourceCounters

__all__ = ["LoadStats"]


@dataclass
class LoadStats:
    """Filled in while a load runs; ``*_s`` stage times are summed over worker threads."""

    mode: str = ""
    device: str = "cpu"
    bytes: int = 0
    tensors: int = 0
    files: int = 0
    threads: int = 0
    request_size: int = 0
    seconds: float = 0.0
    read_s: float = 0.0
    copy_s: float = 0.0
    verify_s: float = 0.0
    verified: bool = False
    stall_s: float = 0.0
    wait_s: float = 0.0
    # bytes by where they came from: local, ram, disk, peers (the swarm), origin
    bytes_by_source: dict[str, int] = field(default_factory=dict)
    corrupt_pieces: int = 0  # caught by their digest and read again from the next source
    # what backs the tensors: hugetlb-pool, huge-pages or small-pages (a private arena),
    # file-mapping (mapped), device (CUDA), "" (load_into's existing tensors only)
    pages: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _attribution: Attribution | None = field(default=None, repr=False, compare=False)
    _counters: SourceCounters | None = field(default=None, repr=False, compare=False)

    def bytes_by_source_now(self) -> dict[str, int]:
        """``bytes_by_source`` while the load is still running (for progress lines)."""
        if self._counters is not None:
            return self._counters.bytes_by_source()
        return self.bytes_by_source

    @property
    def gbps(self) -> float:
        """Throughput in GB/s (10^9 bytes per second)."""
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def add(
        self,
        *,
        read_s: float = 0.0,
        copy_s: float = 0.0,
        verify_s: float = 0.0,
        stall_s: float = 0.0,
    ) -> None:
        with self._lock:
            self.read_s += read_s
            self.copy_s += copy_s
            self.verify_s += verify_s
            self.stall_s += stall_s

    @property
    def attribution(self) -> Attribution:
        """The stage that bound this load and its fraction of this node's limit for it,
        judged against the doctor's figures (kept per boot; the first load of a boot
        that asks measures them in about a second, after the load)."""
        if self._attribution is None:
            self._attribution = _attribute(self._timings())
        return self._attribution

    @property
    def bottleneck(self) -> str | None:
        """storage, network, page-faults, hashing, copy, host-to-device or consumer."""
        return self.attribution.bottleneck

    @property
    def fraction_of_limit(self) -> float | None:
        return self.attribution.fraction_of_limit

    def _timings(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        data = self._timings()
        data["gbps"] = round(self.gbps, 3)
        data["bottleneck"] = self.bottleneck
        fraction = self.fraction_of_limit
        data["fraction_of_limit"] = round(fraction, 3) if fraction is not None else None
        return data


def _attribute(load: dict[str, Any]) -> Attribution:
    """``attribute`` against this boot's figures; nothing when they cannot be had."""
    from pagefault.doctor.diagnosis import machine_limits  # noqa: PLC0415 - only on demand

    if not load.get("bytes") or not load.get("seconds"):
        return Attribution(None, None, None)
    try:
        found = machine_limits()
    except OSError:
        return Attribution(None, None, None)
    return attribute(load, found.limits, found.gpu)
