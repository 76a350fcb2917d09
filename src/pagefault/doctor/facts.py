"""What this node is, read from /proc and /sys (no measurement): CPUs, memory, page
kinds on offer, NUMA layout, cgroup limits, and for GPUs whether GPUDirect Storage is
there and in which mode."""

from __future__ import annotations

import ctypes.util
import os
import platform
from pathlib import Path
from typing import Any

from pagefault.system.hugetlb import pool_page_size, pool_room
from pagefault.system.machine import cpu_count, meminfo_fields

__all__ = ["boot_id", "node_facts"]

_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_NODES = Path("/sys/devices/system/node")
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def boot_id() -> str:
    """This boot's id: measurements are kept until the node reboots."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def node_facts() -> dict[str, Any]:
    """Everything the doctor reports without measuring."""
    meminfo = meminfo_fields()
    page = pool_page_size()
    return {
        "kernel": platform.release(),
        "cpus": cpu_count(),
        "memory_bytes": meminfo.get("MemTotal", 0) * 1024,
        "transparent_huge_pages": _bracketed(_THP),
        "pool": {
            "page_bytes": page,
            "total_bytes": meminfo.get("HugePages_Total", 0) * page,
            "free_bytes": meminfo.get("HugePages_Free", 0) * page,
            "usable_bytes": pool_room(),
        },
        "numa_nodes": _numa_nodes(),
        "cgroup": _cgroup_limits(),
        "gpudirect_storage": gds_mode(),
    }


def gds_mode() -> str:
    """``p2p`` (the nvidia-fs driver is loaded: DMA from NVMe to the GPU), ``compat``
    (libcufile without the driver: cuFile falls back to a bounce buffer), or ``absent``."""
    try:
        modules = Path("/proc/modules").read_text()
    except OSError:
        modules = ""
    if any(line.startswith("nvidia_fs ") for line in modules.splitlines()):
        return "p2p"
    return "compat" if ctypes.util.find_library("cufile") else "absent"


def _bracketed(path: Path) -> str | None:
    """The selected word of a sysfs choice file ("always [madvise] never" -> madvise)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else text.strip()


def _numa_nodes() -> list[dict[str, Any]]:
    nodes = []
    for node in sorted(_NODES.glob("node[0-9]*")):
        meminfo = _node_meminfo(node / "meminfo")
        try:
            cpus = (node / "cpulist").read_text().strip()
        except OSError:
            cpus = ""
        nodes.append({"node": int(node.name[4:]), "cpus": cpus, "memory_bytes": meminfo})
    return nodes


def _node_meminfo(path: Path) -> int:
    """A NUMA node's MemTotal in bytes ("Node 0 MemTotal: 123 kB")."""
    try:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "MemTotal:":
                return int(parts[3]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_limits() -> dict[str, Any]:
    """This process's cgroup v2 memory and I/O limits (None: unlimited or unknown)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return {"memory_max_bytes": None, "io_max": None}
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None:
        return {"memory_max_bytes": None, "io_max": None}
    directory = _CGROUP_ROOT / path.lstrip("/")
    memory = _read(directory / "memory.max")
    io = _read(directory / "io.max")
    return {
        "memory_max_bytes": int(memory) if memory and memory.isdigit() else None,
        "io_max": io or None,
    }


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def gpu_facts(size: int = 256 << 20) -> dict[str, Any] | None:
    """Host-to-device GB/s from pinned and pageable memory on the first GPU; None
    without torch or CUDA (imported here only: the doctor runs without torch)."""
    if os.environ.get("PAGEFAULT_DOCTOR_GPU", "1") == "0":
        return None
    try:
        import torch  # noqa: PLC0415 - heavy, GPU nodes only
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda", 0)
    target = torch.empty(size, dtype=torch.uint8, device=device)
    rates = {}
    for name, pinned in (("pinned", True), ("pageable", False)):
        host = torch.ones(size, dtype=torch.uint8, pin_memory=pinned)
        target.copy_(host, non_blocking=pinned)  # warm-up: context, allocator
        torch.cuda.synchronize(device)
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        start.record()
        target.copy_(host, non_blocking=pinned)
        end.record()
        end.synchronize()
        rates[f"h2d_{name}_gbps"] = size / (start.elapsed_time(end) / 1e3) / 1e9
    return {"name": torch.cuda.get_device_name(device), **rates}
