"""``pagefault doctor``: measure this node once per boot, keep the figures, give advice.

The figures are what the benchmarks measure (:mod:`pagefault.doctor.probes`), kept in
the node cache's ``doctor/<boot id>.json`` so a second call, and every load that asks
for its limits, reads them instead of measuring again; a reboot (new hardware, new
kernel settings) measures afresh. Directory and URI figures are kept per path and URI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pagefault.doctor import probes
from pagefault.doctor.facts import boot_id, gpu_facts, node_facts
from pagefault.doctor.page_kind import choose, remember_kinds
from pagefault.doctor.records import record_path
from pagefault.pieces.engine import map_pieces
from pagefault.system.files import write_atomic

__all__ = ["SAMPLE_BYTES", "Diagnosis", "diagnose", "machine_limits"]

SAMPLE_BYTES = 1 << 30  # the hot file the memory figures read (1 GiB: a few seconds)
QUICK_BYTES = 256 << 20  # when a load needs limits the doctor has not measured yet
PATH_BYTES = 8 << 30  # at most this much of --path is read
URI_BYTES = 256 << 20
URI_STREAMS = 8


@dataclass
class Diagnosis:
    """One node's figures (GB/s unless named otherwise), its facts and the advice."""

    boot_id: str
    measured_at: float
    facts: dict[str, Any]
    limits: dict[str, float | None]  # hot_read, fresh:<kind>, memcpy, shm_write, sha256, ...
    page_kind: str  # the fresh memory a private load gets here (pool, else the policy's)
    paths: dict[str, dict[str, Any]] = field(default_factory=dict)
    uris: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpu: dict[str, Any] | None = None
    advice: list[str] = field(default_factory=list)
    cached: bool = False  # read from this boot's record, not measured now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diagnose(
    *,
    path: Path | None = None,
    uri: str | None = None,
    refresh: bool = False,
    sample_bytes: int = SAMPLE_BYTES,
    progress: Callable[[str], None] | None = None,
) -> Diagnosis:
    """This node's figures: from this boot's record, measuring what it lacks (all of it
    with ``refresh``); ``path`` and ``uri`` add cold reads of a directory and range
    reads of a remote model."""
    say = progress or (lambda _: None)
    found = None if refresh else _read_record()
    if found is None:
        say("measuring memory, copies and hashing")
        found = _measure_machine(sample_bytes)
        found.cached = False
    if path is not None and (refresh or str(path) not in found.paths):
        say(f"reading {path} cold")
        found.paths[str(path)] = _measure_path(path)
        found.cached = False
    if uri is not None and (refresh or uri not in found.uris):
        say(f"reading {uri}")
        found.uris[uri] = _measure_uri(uri)
        found.cached = False
    found.advice = advise(found)
    if not found.cached:
        _write_record(found)
    return found


def machine_limits(*, sample_bytes: int = QUICK_BYTES) -> Diagnosis:
    """The figures a load's bottleneck is judged against: this boot's record, or a
    quick measurement (about a second) kept as the record when there is none."""
    found = _read_record()
    if found is None:
        found = _measure_machine(sample_bytes)
        found.advice = advise(found)
        _write_record(found)
    return found


def _measure_machine(size: int) -> Diagnosis:
    with probes.hot_sample(size) as hot:
        limits: dict[str, float | None] = {"hot_read": _median(partial(probes.hot_read, [hot]))}
        for kind in probes.PAGE_KINDS:
            limits[f"fresh:{kind}"] = _median(partial(probes.fresh_fill, [hot], kind))
    limits["memcpy"] = probes.memcpy_rate(min(size, 512 << 20))
    limits["shm_write"] = probes.shm_write(min(size, 512 << 20))
    limits.update(probes.hash_rates(min(size, 256 << 20)))
    now = time.time()
    fresh = {kind: limits[f"fresh:{kind}"] for kind in probes.PAGE_KINDS}
    remember_kinds(fresh, now)
    # what a private load gets: the pool when it has room, else the policy's choice
    page_kind = "hugetlb-pool" if fresh["hugetlb-pool"] else choose(fresh) or ""
    return Diagnosis(
        boot_id=boot_id(),
        measured_at=now,
        facts=node_facts(),
        limits=limits,
        page_kind=page_kind,
        gpu=gpu_facts(),
    )


def _measure_path(path: Path) -> dict[str, Any]:
    """Reads of the model's own files (the largest first, up to ``PATH_BYTES``): cold
    (page cache dropped) buffered and O_DIRECT, then hot into faulted memory and into
    fresh memory of each kind, as the load benchmark measures them on a checkpoint."""
    files = sorted(_files_under(path), key=lambda p: -p.stat().st_size)
    chosen, total = [], 0
    for f in files:
        if total >= PATH_BYTES:
            break
        chosen.append(f)
        total += f.stat().st_size
    figures: dict[str, Any] = {"bytes": total, "files": len(chosen)}
    if not total:
        return figures
    figures["cold_buffered"] = probes.cold_read(chosen)
    figures["direct"] = probes.direct_read(chosen)
    probes.hot_read(chosen)  # the cold reads dropped them: page-cache the files again
    figures["hot_read"] = _median(partial(probes.hot_read, chosen))
    for kind in probes.PAGE_KINDS:
        figures[f"fresh:{kind}"] = _median(partial(probes.fresh_fill, chosen, kind))
    return figures


def _median(measure: Callable[[], float | None], passes: int = 3) -> float | None:
    """The median of ``passes`` measurements: this VM's fresh memory alone swings 2-3x
    from one pass to the next (docs/benchmarks.md), as the benchmark's rounds do."""
    found = sorted(r for r in (measure() for _ in range(passes)) if r is not None)
    return found[len(found) // 2] if found else None


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]


def _measure_uri(uri: str) -> dict[str, Any]:
    """Range reads of the model's largest file: one stream, then ``URI_STREAMS``."""
    from pagefault.sources.describe import describe  # noqa: PLC0415 - remote stack

    description = describe(uri)
    sources = description.origins()
    try:
        source = max(sources, key=lambda s: s.size())
        size = min(source.size(), URI_BYTES)
        piece = max(1 << 20, min(8 << 20, size // (2 * URI_STREAMS)))  # work for every stream
        offsets = list(range(0, size, piece))

        def read(offset: int) -> None:
            buffer = bytearray(min(piece, size - offset))
            source.read_into(offset, [memoryview(buffer)])

        def timed(streams: int) -> float:
            started = time.perf_counter()
            map_pieces(read, offsets, threads=streams, name="doctor-uri")
            return size / (time.perf_counter() - started) / 1e9

        return {"bytes": size, "one_stream": timed(1), "parallel": timed(URI_STREAMS)}
    finally:
        for s in sources:
            s.close()


def _read_record() -> Diagnosis | None:
    try:
        data = json.loads(record_path().read_text())
        found = Diagnosis(**data)
    except (OSError, ValueError, TypeError):
        return None
    if found.boot_id != boot_id():
        return None
    found.cached = True
    return found


def _write_record(found: Diagnosis) -> None:
    target = record_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in found.to_dict().items() if k != "cached"}
    data["cached"] = False
    write_atomic(target, [json.dumps(data, indent=1).encode()], durable=False)


def advise(found: Diagnosis) -> list[str]:
    """What a person can do about the figures, most consequential first."""
    limits, advice = found.limits, []
    hot = limits.get("hot_read") or 0.0
    best = limits.get(f"fresh:{found.page_kind}") or 0.0
    pool = found.facts.get("pool", {})
    if hot and best and best < 0.7 * hot:
        size = _gib(max(pool.get("total_bytes", 0), 8 << 30))
        advice.append(
            f"fresh-memory faults cap private loads at {best:.1f} GB/s (reads reach "
            f"{hot:.1f}): `pagefault pool reserve {size}`, or load with mmap=True"
        )
    if found.page_kind:
        advice.append(f"private loads use {found.page_kind} (measured faster here)")
    sha, b3 = limits.get("sha256") or 0.0, limits.get("blake3") or 0.0
    if sha and b3 > 2 * sha:
        advice.append(
            f"SHA-256 verifies {sha:.1f} GB/s per thread, BLAKE3 {b3:.1f}: build manifests "
            "with `manifest build --hash blake3` where verification binds"
        )
    cgroup = found.facts.get("cgroup", {})
    if cgroup.get("memory_max_bytes"):
        advice.append(
            f"this cgroup may use {_gib(cgroup['memory_max_bytes'])}: larger models need "
            "mmap=True or paged weights"
        )
    if cgroup.get("io_max"):
        advice.append(f"the cgroup caps I/O ({cgroup['io_max']}): storage reads stop there")
    for name, figures in found.paths.items():
        cold, direct = figures.get("cold_buffered"), figures.get("direct")
        if cold and direct and direct > 1.3 * cold:
            advice.append(
                f"{name}: O_DIRECT reads {direct:.2f} GB/s, buffered {cold:.2f}: the page "
                "cache's copy binds cold loads here (mmap=True avoids the second copy)"
            )
    for name, figures in found.uris.items():
        one, many = figures.get("one_stream") or 0.0, figures.get("parallel") or 0.0
        if one and many > 1.5 * one:
            advice.append(
                f"{name}: one connection gets {one:.2f} GB/s, {URI_STREAMS} get {many:.2f}: "
                "the origin caps each connection; keep parallel ranges (the default)"
            )
    if len(found.facts.get("numa_nodes", [])) > 1:
        advice.append("several NUMA nodes: run each loader on the node of its GPU (numactl)")
    gds = found.facts.get("gpudirect_storage")
    if found.gpu is not None and gds != "p2p":
        advice.append(f"GPUDirect Storage is {gds}: storage-to-GPU reads bounce through host")
    return advice


def _gib(nbytes: int) -> str:
    return f"{max(1, round(nbytes / (1 << 30)))}GiB"
