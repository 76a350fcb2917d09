"""A finished piece is reported had only once its stored bytes match the manifest."""

from __future__ import annotations

from pathlib import Path

from pagefault.cache import CacheConfig, NodeCache
from pagefault.manifest import FileDigest, PieceManifest, hash_piece
from pagefault.swarm.admission import PieceAdmission
from pagefault.swarm.torrent import SwarmFile, TorrentLayout

PIECE = 16 * 1024
DATA = bytes(range(251)) * 200  # 50,200 bytes: three whole pieces and a short one


def admission(
    tmp_path: Path, *, ram: bool = True
) -> tuple[PieceAdmission, list[int], list[tuple[int, str]]]:
    """Admission over a seed file already holding DATA (as libtorrent leaves it)."""
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "w.safetensors").write_bytes(DATA)
    pieces = [DATA[i : i + PIECE] for i in range(0, len(DATA), PIECE)]
    digest = FileDigest("w.safetensors", len(DATA), tuple(hash_piece([p]) for p in pieces))
    manifest = PieceManifest(PIECE, (digest,))
    layout = TorrentLayout(PIECE, (SwarmFile("w.safetensors", len(DATA), 0, 4, "w.safetensors"),))
    admitted: list[int] = []
    corrupt: list[tuple[int, str]] = []
    ram_dir = tmp_path / "ram" if ram else None
    gate = PieceAdmission(
        layout,
        manifest,
        tmp_path / "seed",
        cache=NodeCache(CacheConfig(disk_dir=tmp_path / "disk", ram_dir=ram_dir)),
        on_admitted=admitted.append,
        on_corrupt=lambda p, w: corrupt.append((p, w)),
    )
    return gate, admitted, corrupt


def test_good_pieces_are_cached_then_reported(tmp_path: Path) -> None:
    gate, admitted, corrupt = admission(tmp_path)
    for index in range(4):
        gate.admit(index, DATA[index * PIECE : (index + 1) * PIECE])
    assert admitted == [0, 1, 2, 3] and corrupt == []
    assert gate.cache is not None
    assert gate.cache.find(hash_piece([DATA[3 * PIECE :]])) is not None


def test_a_piece_whose_stored_bytes_differ_is_never_reported_or_cached(tmp_path: Path) -> None:
    gate, admitted, corrupt = admission(tmp_path)
    bad = bytearray(DATA[PIECE : 2 * PIECE])
    bad[100] ^= 0xFF
    gate.admit(1, bytes(bad))
    gate.admit(2, DATA[2 * PIECE : 2 * PIECE + 10])  # short: a torn read
    assert admitted == []
    assert [piece for piece, _ in corrupt] == [1, 2]
    assert "fail their digest" in corrupt[0][1] and "read back 10 bytes" in corrupt[1][1]
    assert gate.cache is not None and gate.cache.find(hash_piece([bytes(bad)])) is None


def test_the_disk_tier_links_to_the_seed_file_instead_of_a_second_copy(tmp_path: Path) -> None:
    gate, admitted, _ = admission(tmp_path, ram=False)
    for index in range(4):
        gate.admit(index, DATA[index * PIECE : (index + 1) * PIECE])
    assert admitted == [0, 1, 2, 3] and gate.cache is not None
    disk = gate.cache.tiers[0]
    entries = disk.scan()
    assert len(entries) == 4 and all(e.size < 1024 for e in entries)  # links, not bytes
    want = hash_piece([DATA[2 * PIECE : 3 * PIECE]])
    assert disk.held(want) == PIECE
    hit = gate.cache.find(want)
    assert hit is not None
    with hit.piece as piece:
        data = memoryview(bytearray(piece.length))
        piece.read_into([data])
        assert bytes(data) == DATA[2 * PIECE : 3 * PIECE] and piece.matches([data])


def test_a_link_to_a_changed_or_vanished_file_never_reads_as_the_piece(tmp_path: Path) -> None:
    gate, _, _ = admission(tmp_path, ram=False)
    for index in range(4):
        gate.admit(index, DATA[index * PIECE : (index + 1) * PIECE])
    assert gate.cache is not None
    seed = tmp_path / "seed" / "w.safetensors"
    with seed.open("r+b") as f:  # the seed file was overwritten under the link
        f.seek(PIECE + 7)
        f.write(b"\xff")
    second = hash_piece([DATA[PIECE : 2 * PIECE]])
    hit = gate.cache.find(second)
    assert hit is not None
    with hit.piece as piece:
        data = memoryview(bytearray(piece.length))
        piece.read_into([data])
        assert not piece.matches([data])  # readers drop it and fetch the piece again
    seed.unlink()
    first = hash_piece([DATA[:PIECE]])
    assert gate.cache.find(first) is None and gate.cache.tiers[0].held(first) == 0
