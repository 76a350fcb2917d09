"""The catalog's piece digests: one table per file from a manifest, single pieces learned on top."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pagefault.cache.catalog import Catalog

KEY = "f" * 40


def digest(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def test_a_manifest_is_recorded_in_one_file_and_read_back_piece_by_piece(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    shas = tuple(digest(i) for i in range(200))
    catalog.learn_all(KEY, shas)
    assert os.listdir(tmp_path / "files" / KEY) == ["digests"]
    assert catalog.pieces(KEY, 201) == [*shas, None]
    assert [catalog.piece(KEY, i) for i in (0, 199, 200)] == [shas[0], shas[199], None]
    assert catalog.known(KEY) == set(shas)
    assert Catalog(tmp_path).pieces(KEY, 200) == list(shas)  # another process reads it too


def test_a_piece_learned_alone_wins_until_the_next_manifest(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.learn_all(KEY, (digest(0), digest(1)))
    catalog.learn(KEY, 1, digest(99))
    assert catalog.pieces(KEY, 2) == [digest(0), digest(99)]
    table = tmp_path / "files" / KEY / "digests"
    catalog.learn_all(KEY, (digest(0), digest(1)))  # disagrees with piece 1: rewritten
    assert catalog.pieces(KEY, 2) == [digest(0), digest(1)]
    assert sorted(os.listdir(table.parent)) == ["digests"]
    inode = table.stat().st_ino
    catalog.learn_all(KEY, (digest(0), digest(1)))  # all on record: nothing written
    assert table.stat().st_ino == inode


def test_another_processs_new_table_is_read_again(tmp_path: Path) -> None:
    reader = Catalog(tmp_path)
    Catalog(tmp_path).learn_all(KEY, (digest(0),))
    assert reader.piece(KEY, 0) == digest(0)
    Catalog(tmp_path).learn_all(KEY, (digest(5), digest(6)))
    assert reader.piece(KEY, 0) == digest(5)
    assert reader.piece(KEY, 1) == digest(6)


def test_a_torn_or_foreign_table_is_no_record(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    table = tmp_path / "files" / KEY / "digests"
    table.parent.mkdir(parents=True)
    table.write_text(f"something else\n{digest(0)}\n")
    assert catalog.pieces(KEY, 1) == [None]
    table.write_text(f"pagefault-piece-digests/1\n{digest(0)}\nsha256:short\n")
    assert catalog.pieces(KEY, 3) == [digest(0), None, None]
    catalog.learn_all(KEY, (digest(0), digest(1)))
    assert catalog.pieces(KEY, 2) == [digest(0), digest(1)]
