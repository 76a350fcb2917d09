"""Link tables: one append-only file per linked file, read by every process on the node."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pagefault.cache.links import LinkTables
from pagefault.errors import CacheError


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_a_miss_reads_the_tables_again_at_most_every_refresh_s(tmp_path: Path) -> None:
    seed = tmp_path / "seed.bin"
    seed.touch()
    writer, reader = LinkTables(tmp_path / "links"), LinkTables(tmp_path / "links", refresh_s=3600)
    assert reader.find(digest(0)) is None
    writer.add(digest(0), seed, 0, 1, 1)
    assert reader.find(digest(0)) is None  # a miss just now: not read again yet
    assert reader.entries() and reader.find(digest(0)) is not None


def test_links_to_one_file_share_one_table_that_another_process_reads(tmp_path: Path) -> None:
    seed = tmp_path / "seed.bin"
    seed.write_bytes(bytes(100))
    writer = LinkTables(tmp_path / "links")
    for n in range(50):
        writer.add(digest(n), seed, n * 2, 2, n)
    assert len(os.listdir(tmp_path / "links")) == 1  # one file, not one per piece
    link = LinkTables(tmp_path / "links").find(digest(7))
    assert link is not None
    assert (link.target, link.offset, link.length, link.checksum) == (seed, 14, 2, 7)


def test_a_torn_last_line_waits_for_its_end(tmp_path: Path) -> None:
    seed = tmp_path / "seed.bin"
    seed.touch()
    writer, reader = LinkTables(tmp_path / "links"), LinkTables(tmp_path / "links", refresh_s=0)
    writer.add(digest(0), seed, 0, 1, 1)
    (table,) = (tmp_path / "links").iterdir()
    line = f"{digest(1)} 1 2 3\n".encode()
    with table.open("ab") as out:
        out.write(line[:20])
    assert reader.find(digest(0)) is not None and reader.find(digest(1)) is None
    with table.open("ab") as out:
        out.write(line[20:])
    link = reader.find(digest(1))
    assert link is not None and link.offset == 3


def test_a_dropped_link_is_gone_for_every_reader(tmp_path: Path) -> None:
    seed = tmp_path / "seed.bin"
    seed.touch()
    writer, reader = LinkTables(tmp_path / "links"), LinkTables(tmp_path / "links")
    writer.add(digest(0), seed, 0, 1, 1)
    assert reader.find(digest(0)) is not None
    assert writer.drop(digest(0)) and not writer.drop(digest(0))
    assert [sha for sha, _ in reader.entries()] == []  # entries() reads every table again
    assert reader.find(digest(0)) is None


def test_tables_of_vanished_files_are_removed(tmp_path: Path) -> None:
    kept, gone = tmp_path / "kept.bin", tmp_path / "gone.bin"
    kept.touch()
    gone.touch()
    tables = LinkTables(tmp_path / "links")
    tables.add(digest(0), kept, 0, 1, 1)
    tables.add(digest(1), gone, 0, 1, 1)
    gone.unlink()
    assert tables.remove_orphans() == 1
    assert [sha for sha, _ in tables.entries()] == [digest(0)]
    assert len(os.listdir(tmp_path / "links")) == 1


@pytest.mark.parametrize("target", [Path("relative.bin"), Path("/tmp/new\nline")])
def test_a_link_needs_an_absolute_path_without_newlines(tmp_path: Path, target: Path) -> None:
    with pytest.raises(CacheError, match="absolute path without newlines"):
        LinkTables(tmp_path / "links").add(digest(0), target, 0, 1, 1)
