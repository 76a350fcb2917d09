"""Read-ahead: hints reach the page cache, stay within their lead, and stop cleanly."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

import pagefault
from pagefault.pipeline.plan import ReadTask, Segment
from pagefault.pipeline.readahead import ReadAhead, default_lead
from pagefault.sources import LocalFileSource, MemorySource
from pagefault.system.pagecache import cached_bytes
from tests.helpers import dropped, resident_share, same_bytes

MiB = 1 << 20


def tasks_of(count: int, size: int, file_index: int = 0) -> list[ReadTask]:
    return [ReadTask(file_index, i * size, (Segment(i, 0, size),)) for i in range(count)]


class HintLog:
    """A page-cache source double that records its hints (the real file is tested above)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.hints: list[tuple[int, int]] = []
        self.changed = threading.Condition()
        self.fail_after = fail_after

    name = "hint-log"

    def size(self) -> int:
        return 1 << 40

    def read_into(self, offset: int, buffers: object) -> None:
        raise AssertionError("read-ahead never reads")

    def close(self) -> None:
        pass

    def cached(self, offset: int, length: int) -> int | None:
        return None

    def prefetch(self, offset: int, length: int) -> None:
        with self.changed:
            if self.fail_after is not None and len(self.hints) >= self.fail_after:
                raise OSError(9, "Bad file descriptor")
            self.hints.append((offset, length))
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[tuple[int, int]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.hints) >= count, timeout=10)
            return list(self.hints)


def test_a_local_file_prefetch_fills_the_page_cache_beyond_one_readahead_window(
    tmp_path: Path,
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(48 * MiB))  # several times any device's readahead window
    source = LocalFileSource(dropped(path))
    try:
        source.prefetch(0, 48 * MiB)
        deadline = time.monotonic() + 20
        while resident_share(path) < 0.99 and time.monotonic() < deadline:
            time.sleep(0.01)  # poll: the kernel reads asynchronously
        assert resident_share(path) >= 0.99
    finally:
        source.close()


def test_the_page_cache_says_how_much_of_a_range_it_holds(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(os.urandom(8 * MiB))
    path = dropped(tmp_path / "blob")
    fd = os.open(path, os.O_RDONLY)
    try:
        if cached_bytes(fd, 0, 8 * MiB) is None:
            pytest.skip("no cachestat() on this kernel (Linux < 6.5)")
        assert cached_bytes(fd, 0, 8 * MiB) == 0
        os.pread(fd, 3 * MiB, MiB)
        assert cached_bytes(fd, MiB, 3 * MiB) == 3 * MiB
        assert cached_bytes(fd, 0, 8 * MiB) == 3 * MiB
    finally:
        os.close(fd)


def test_a_cached_range_is_not_hinted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(8 * MiB))
    dropped(path)
    calls: list[tuple[int, int]] = []
    real = os.posix_fadvise

    def counting(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((offset, length))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", counting)
    with LocalFileSource(path) as source:
        source.prefetch(0, 4 * MiB)
        assert calls == [(0, 2 * MiB), (2 * MiB, 2 * MiB)]
        path.read_bytes()  # now all of it is cached
        calls.clear()
        source.prefetch(0, 8 * MiB)
    fd = os.open(path, os.O_RDONLY)
    supported = cached_bytes(fd, 0, MiB) is not None
    os.close(fd)
    assert calls == ([] if supported else [(i * 2 * MiB, 2 * MiB) for i in range(4)])


def test_hints_go_in_order_and_stay_within_the_lead() -> None:
    log = HintLog()
    read_ahead = ReadAhead([log], tasks_of(10, MiB), lead=3 * MiB).start()
    try:
        assert log.wait_for(3) == [(i * MiB, MiB) for i in range(3)]
        read_ahead.consumed(2 * MiB)  # the workers finished two tasks: two more hints
        assert log.wait_for(5) == [(i * MiB, MiB) for i in range(5)]
    finally:
        read_ahead.stop()
    assert len(log.hints) == 5  # it was waiting for the workers when told to stop


def test_the_default_lead_is_half_the_available_memory() -> None:
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available = int(fields["MemAvailable"].split()[0]) * 1024
    assert 0.4 * available <= default_lead() <= 0.6 * available


def test_a_failing_hint_ends_read_ahead_quietly() -> None:
    log = HintLog(fail_after=2)
    read_ahead = ReadAhead([log], tasks_of(6, MiB), lead=100 * MiB).start()
    log.wait_for(2)
    read_ahead.stop()  # returns: the thread has ended on the error
    assert len(log.hints) == 2


def test_sources_without_a_page_cache_get_no_thread() -> None:
    read_ahead = ReadAhead([MemorySource("mem", b"x" * MiB)], tasks_of(1, MiB))
    assert not read_ahead.wanted
    read_ahead.start().stop()


@pytest.mark.parametrize("mapped", [False, True], ids=["private", "mapped"])
def test_cold_load_is_identical_and_leaves_no_read_ahead_behind(
    single_checkpoint: Path, mapped: bool
) -> None:
    dropped(single_checkpoint)
    loaded = pagefault.load(single_checkpoint, mmap=mapped)
    expected = load_file(single_checkpoint)
    assert loaded.keys() == expected.keys()
    assert all(same_bytes(loaded[k], expected[k]) for k in expected)
    assert not [t for t in threading.enumerate() if t.name == "pagefault-readahead"]
