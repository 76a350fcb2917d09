"""The node's reserved huge-page pool (hugetlb): how much of it this process may take.

Pages an administrator reserves with ``vm.nr_hugepages`` (on Kubernetes, a pod's
``hugepages-2Mi`` request) stay out of the kernel's free lists. A VM balloon with free
page reporting never hands them back to the host, so faulting them in costs one clear
per page, where fresh memory from the free lists may also cost a host fault per page:
3-5 s instead of 0.5 s for 4 GiB on the benchmark VM (docs/benchmarks.md).

A fault beyond a cgroup's hugetlb limit is a SIGBUS, not an error code, so the room
this module reports is the smallest of the pool's free, unreserved pages and every
enclosing cgroup's hugetlb headroom; a limit it cannot read counts as no room.
"""

from __future__ import annotations

from pathlib import Path

from pagefault.system.machine import MEMINFO, meminfo_fields

__all__ = ["cgroup_room", "pool_nodes", "pool_page_size", "pool_room", "resize_pool"]

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
_NODES = Path("/sys/devices/system/node")
_OWN_CGROUPS = Path("/proc/self/cgroup")
_UNLIMITED = 1 << 62


def pool_page_size(meminfo: Path = MEMINFO) -> int:
    """The default huge page size in bytes (``Hugepagesize``), 0 when the kernel has none."""
    return meminfo_fields(meminfo).get("Hugepagesize", 0) * 1024


def pool_room(
    meminfo: Path = MEMINFO, cgroups: Path = _OWN_CGROUPS, root: Path = _CGROUP_ROOT
) -> int:
    """Bytes of the reserved pool this process can fault in without a SIGBUS."""
    fields = meminfo_fields(meminfo)
    page = fields.get("Hugepagesize", 0) * 1024
    free_pages = fields.get("HugePages_Free", 0) - fields.get("HugePages_Rsvd", 0)
    if page == 0 or free_pages <= 0:
        return 0
    return min(free_pages * page, cgroup_room(page, cgroups, root))


def pool_nodes(nodes: Path = _NODES) -> list[dict[str, int]]:
    """Per NUMA node: the pool's pages of the default size, in bytes (total and free)."""
    page = pool_page_size()
    found = []
    for node in sorted(nodes.glob("node[0-9]*"), key=lambda n: int(n.name[4:])):
        directory = node / "hugepages" / f"hugepages-{page >> 10}kB"
        try:
            total = int((directory / "nr_hugepages").read_text())
            free = int((directory / "free_hugepages").read_text())
        except (OSError, ValueError):
            continue
        found.append(
            {"node": int(node.name[4:]), "total_bytes": total * page, "free_bytes": free * page}
        )
    return found


def resize_pool(
    nbytes: int, node: int | None = None, nodes: Path = _NODES, sysctl: Path = _NR_HUGEPAGES
) -> int:
    """Make the pool (one NUMA node's share, or the whole node's) hold ``nbytes``,
    rounded up to whole pages; returns the bytes it holds after, which may be fewer
    when memory is fragmented. ``OSError`` when the kernel refuses (not root)."""
    page = pool_page_size()
    if page == 0:
        raise OSError("this kernel has no huge-page pool (no Hugepagesize in /proc/meminfo)")
    target = sysctl
    if node is not None:
        target = nodes / f"node{node}" / "hugepages" / f"hugepages-{page >> 10}kB" / "nr_hugepages"
        if not target.exists():
            raise OSError(f"no NUMA node {node} with {page >> 10} kB huge pages ({target})")
    target.write_text(str(-(-nbytes // page)))
    return int(target.read_text()) * page


def cgroup_room(page: int, cgroups: Path = _OWN_CGROUPS, root: Path = _CGROUP_ROOT) -> int:
    """The hugetlb headroom of this process's cgroup and its ancestors (v1 and v2)."""
    label = _size_label(page)
    room = _UNLIMITED
    for directory, limit_names, usage_names in _hugetlb_dirs(cgroups, root):
        for limit_name, usage_name in zip(limit_names, usage_names, strict=True):
            limit_file = directory / f"hugetlb.{label}.{limit_name}"
            if not limit_file.exists():
                continue
            limit = _read_limit(limit_file)
            usage = _read_limit(directory / f"hugetlb.{label}.{usage_name}")
            if limit is None or usage is None:
                return 0
            room = min(room, limit - usage)
    return max(room, 0)


def _hugetlb_dirs(cgroups: Path, root: Path) -> list[tuple[Path, list[str], list[str]]]:
    """Cgroup directories that may limit hugetlb use, with their limit and usage names."""
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: fault-time limit and reservation limit
            base, names = root, (["max", "rsvd.max"], ["current", "rsvd.current"])
        elif "hugetlb" in controllers.split(","):
            base, names = root / "hugetlb", (["limit_in_bytes"], ["usage_in_bytes"])
        else:
            continue
        parts = [p for p in path.split("/") if p and p != ".."]
        found += [(base.joinpath(*parts[:n]), *names) for n in range(len(parts), -1, -1)]
    return found


def _read_limit(path: Path) -> int | None:
    """A limit or usage file's value in bytes ("max" = unlimited); None when unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return _UNLIMITED
    return int(text) if text.isdigit() else None


def _size_label(page: int) -> str:
    """The kernel's name for a huge page size in cgroup files: 2MB, 1GB, 64KB."""
    for shift, unit in ((30, "GB"), (20, "MB")):
        if page >= 1 << shift:
            return f"{page >> shift}{unit}"
    return f"{page >> 10}KB"
