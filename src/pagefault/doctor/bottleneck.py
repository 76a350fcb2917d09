"""Which stage bound a load, and how close it came to this node's limit for that stage.

A load's worker threads time each stage of every read (read, verify, copy, waiting for
a staging slot; summed over threads), and the stream times how long its consumer
waited. The stage holding the largest share of the wall time bound the load; a read is
split by where its time goes: faulting fresh memory (when the node fills fresh pages of
that kind slower than it reads), the network (bytes from an origin or peers), or storage.
``fraction_of_limit`` is the load's rate over the doctor's figure for that stage
(None when the doctor has no figure for it, e.g. a network it was not pointed at).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["STAGES", "Attribution", "attribute", "explain"]

STAGES = (
    "storage",
    "network",
    "page-faults",
    "hashing",
    "copy",
    "host-to-device",
    "consumer",
)
_FAULT_BOUND = 0.6  # a read at >= 60% of the fresh-fill figure is waiting on page faults


@dataclass(frozen=True)
class Attribution:
    bottleneck: str | None  # one of STAGES; None: nothing to attribute (no bytes)
    fraction_of_limit: float | None
    limit_gbps: float | None  # the figure it was judged against


def attribute(
    load: Mapping[str, Any],
    limits: Mapping[str, float | None],
    gpu: Mapping[str, Any] | None = None,
) -> Attribution:
    """The bottleneck of ``load`` (a ``LoadStats.to_dict()`` without attribution) against
    ``limits`` (a doctor record's ``limits``)."""
    seconds, nbytes = float(load.get("seconds") or 0), int(load.get("bytes") or 0)
    if seconds <= 0 or nbytes <= 0:
        return Attribution(None, None, None)
    rate = nbytes / seconds / 1e9
    threads = max(1, int(load.get("threads") or 1))
    shares = {
        "read": float(load.get("read_s") or 0) / threads,
        "hashing": float(load.get("verify_s") or 0) / threads,
        "copy": float(load.get("copy_s") or 0) / threads,
        "host-to-device": float(load.get("stall_s") or 0) / threads,
    }
    if load.get("pages") == "file-mapping":  # nothing copied: no read figure applies
        return Attribution("storage", None, None)
    waited = float(load.get("wait_s") or 0)
    if waited and max(shares.values()) < 0.5 * seconds and waited < 0.1 * seconds:
        return Attribution("consumer", None, None)  # the pipeline kept ahead of its reader
    stage = max(shares, key=lambda k: shares[k])
    if stage == "read":
        stage, limit = _read_stage(load, rate, limits)
    elif stage == "hashing":
        limit = _scaled(limits.get("sha256"), threads)
    elif stage == "copy":
        limit = _scaled(limits.get("memcpy"), threads)
    else:
        limit = (gpu or {}).get("h2d_pinned_gbps")
    return Attribution(stage, rate / limit if limit else None, limit)


def _read_stage(
    load: Mapping[str, Any], rate: float, limits: Mapping[str, float | None]
) -> tuple[str, float | None]:
    sources = load.get("bytes_by_source") or {}
    remote = sum(int(sources.get(k, 0)) for k in ("origin", "peers"))
    if remote > 0.5 * int(load.get("bytes") or 0):
        return "network", None
    hot = limits.get("hot_read")
    fresh = limits.get(f"fresh:{load.get('pages')}")
    if fresh and hot and fresh < hot and rate >= _FAULT_BOUND * fresh:
        return "page-faults", fresh
    return "storage", hot


def _scaled(per_thread: float | None, threads: int) -> float | None:
    return per_thread * threads if per_thread else None


_WHAT_HELPS = {
    "storage": "the storage read rate bound it",
    "network": "the network bound it (the node cache or the swarm serves a second load)",
    "page-faults": "faulting fresh memory bound it: `pagefault pool reserve SIZE`, or --mmap",
    "hashing": "verifying pieces bound it: `manifest build --hash blake3`, or more --threads",
    "copy": "dtype conversion or staging copies bound it",
    "host-to-device": "host-to-device copies bound it",
    "consumer": "the code consuming the tensors bound it, not the load",
}


def explain(attribution: Attribution) -> str:
    """One line a person can act on: the stage, how near its limit, what helps."""
    if attribution.bottleneck is None:
        return "bottleneck: none (nothing was read)"
    line = f"bottleneck: {attribution.bottleneck}"
    if attribution.fraction_of_limit is not None and attribution.limit_gbps:
        line += (
            f" at {attribution.fraction_of_limit:.2f}x this node's "
            f"{attribution.limit_gbps:.2f} GB/s for it"
        )
    return f"{line}; {_WHAT_HELPS[attribution.bottleneck]} (`pagefault doctor`)"
