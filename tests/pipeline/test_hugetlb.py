"""The reserved huge-page pool: how much room it has, and the arena taking it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pagefault
from pagefault.pipeline.tuning import MAX_THREADS
from pagefault.sources import LocalFileSource
from pagefault.system.hugetlb import cgroup_room, pool_page_size, pool_room
from pagefault.system.machine import cpu_count
from pagefault.tensors.memory import HUGETLB_ENV, Arena
from pagefault.testing.hugetlb import reserved_pool
from tests.helpers import dropped

MiB = 1 << 20
PAGE = 2 * MiB


def _meminfo(tmp_path: Path, free: int, reserved: int = 0, size_kb: int | None = 2048) -> Path:
    lines = [f"HugePages_Total:    {free + 4}", f"HugePages_Free:     {free}"]
    lines.append(f"HugePages_Rsvd:     {reserved}")
    if size_kb is not None:
        lines.append(f"Hugepagesize:       {size_kb} kB")
    path = tmp_path / "meminfo"
    path.write_text("\n".join(lines) + "\n")
    return path


def _cgroup(tmp_path: Path, line: str, files: dict[str, str]) -> tuple[Path, Path]:
    tmp_path.mkdir(exist_ok=True)
    own = tmp_path / "self-cgroup"
    own.write_text(line + "\n")
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    return own, root


def test_room_is_free_pages_not_yet_promised_to_a_mapping(tmp_path: Path) -> None:
    no_cgroup = tmp_path / "absent"
    meminfo = _meminfo(tmp_path, free=10, reserved=3)
    assert pool_page_size(meminfo) == PAGE
    assert pool_room(meminfo, no_cgroup, no_cgroup) == 7 * PAGE
    assert pool_room(_meminfo(tmp_path, free=2, reserved=2), no_cgroup, no_cgroup) == 0
    assert pool_room(_meminfo(tmp_path, free=9, size_kb=None), no_cgroup, no_cgroup) == 0


def test_the_tightest_enclosing_cgroup_v2_limit_wins(tmp_path: Path) -> None:
    own, root = _cgroup(
        tmp_path,
        "0::/pods/pod1/app",
        {
            "pods/pod1/hugetlb.2MB.max": str(8 * PAGE),
            "pods/pod1/hugetlb.2MB.current": str(5 * PAGE),
            "pods/pod1/app/hugetlb.2MB.max": "max",
            "pods/pod1/app/hugetlb.2MB.current": "0",
            "pods/hugetlb.2MB.rsvd.max": str(20 * PAGE),
            "pods/hugetlb.2MB.rsvd.current": str(16 * PAGE),
        },
    )
    assert cgroup_room(PAGE, own, root) == 3 * PAGE
    assert pool_room(_meminfo(tmp_path, free=100), own, root) == 3 * PAGE
    assert pool_room(_meminfo(tmp_path, free=2), own, root) == 2 * PAGE


def test_cgroup_v1_hugetlb_controller_limits_too(tmp_path: Path) -> None:
    own, root = _cgroup(
        tmp_path,
        "7:hugetlb:/job\n4:memory:/job",
        {
            "hugetlb/job/hugetlb.1GB.limit_in_bytes": str(4 << 30),
            "hugetlb/job/hugetlb.1GB.usage_in_bytes": str(1 << 30),
        },
    )
    assert cgroup_room(1 << 30, own, root) == 3 << 30
    assert cgroup_room(PAGE, own, root) > 1 << 40  # no 2MB limit file: unlimited


def test_a_limit_that_cannot_be_read_means_no_room(tmp_path: Path) -> None:
    """A fault past the limit is a SIGBUS: never guess."""
    own, root = _cgroup(
        tmp_path, "0::/app", {"app/hugetlb.2MB.max": "lots", "app/hugetlb.2MB.current": "0"}
    )
    assert cgroup_room(PAGE, own, root) == 0
    own, root = _cgroup(tmp_path / "b", "0::/app", {"app/hugetlb.2MB.max": str(8 * PAGE)})
    assert cgroup_room(PAGE, own, root) == 0  # usage file missing


@pytest.fixture
def pool() -> Iterator[int]:
    """16 MiB of reserved huge pages for one test (root only)."""
    try:
        with reserved_pool(16 * MiB) as added:
            if added < 16 * MiB:
                pytest.skip(f"the kernel reserved only {added} of 16 MiB of huge pages")
            yield added
    except PermissionError as exc:
        pytest.skip(f"cannot reserve huge pages: {exc}")


def _hugetlb_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("HugetlbPages:"):
            return int(line.split()[1])
    return 0


def test_the_arena_takes_reserved_pages_and_gives_them_back(pool: int) -> None:
    before = _hugetlb_kib()
    arena = Arena(6 * MiB + 5)
    assert arena.pooled and arena.huge_pages and arena.pages == "hugetlb-pool"
    tensor = arena.tensor(64, torch.float32, (4,))
    arena.view(64, 16)[:] = torch.arange(4, dtype=torch.float32).numpy().tobytes()
    assert tensor.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert _hugetlb_kib() - before == 2048  # one page touched so far
    del arena, tensor
    assert _hugetlb_kib() == before


def test_a_pool_too_small_or_turned_off_leaves_the_arena_on_ordinary_memory(
    pool: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not Arena(pool_room() + 1).pooled
    monkeypatch.setenv(HUGETLB_ENV, "0")
    assert not Arena(MiB).pooled
    monkeypatch.setenv(HUGETLB_ENV, "1")
    monkeypatch.setenv("PAGEFAULT_HUGE_PAGES", "0")
    assert not Arena(MiB).pooled


def test_a_private_load_from_the_pool_is_byte_identical(pool: int, single_checkpoint: Path) -> None:
    before = _hugetlb_kib()
    stream = pagefault.stream(single_checkpoint, mmap=False)
    loaded = dict(stream)
    assert _hugetlb_kib() > before  # the arena came from the pool
    assert stream.stats.pages == "hugetlb-pool"
    expected = load_file(single_checkpoint)
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(loaded[name].view(torch.uint8), tensor.view(torch.uint8)), name


def test_a_cold_load_into_the_pool_leaves_a_cpu_to_read_ahead(
    pool: int, single_checkpoint: Path
) -> None:
    with LocalFileSource(dropped(single_checkpoint)) as source:
        if source.cached(0, source.size()) is None:
            pytest.skip("no cachestat() on this kernel (Linux < 6.5)")
    cold = pagefault.stream(single_checkpoint, mmap=False)
    dict(cold)
    warm = pagefault.stream(single_checkpoint, mmap=False)
    dict(warm)
    assert cold.stats.pages == warm.stats.pages == "hugetlb-pool"
    assert cold.stats.threads == max(1, cpu_count() - 1)
    assert warm.stats.threads == min(MAX_THREADS, max(2, cpu_count()))
