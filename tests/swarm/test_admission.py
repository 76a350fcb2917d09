"""A finished piece is reported had only once its stored bytes match the manifest."""

from __future__ import annotations

from pathlib import Path

from pagefault.cache import CacheConfig, NodeCache
from pagefault.manifest import FileDigest, PieceManifest, hash_piece
from pagefault.swarm.admission import PieceAdmission
from pagefault.swarm.torrent import SwarmFile, TorrentLayout

PIECE = 16 * 1024
DATA = bytes(range(251)) * 200  # 50,200 bytes: three whole pieces and a short one


def admission(tmp_path: Path) -> tuple[PieceAdmission, list[int], list[tuple[int, str]]]:
    pieces = [DATA[i : i + PIECE] for i in range(0, len(DATA), PIECE)]
    digest = FileDigest("w.safetensors", len(DATA), tuple(hash_piece([p]) for p in pieces))
    manifest = PieceManifest(PIECE, (digest,))
    layout = TorrentLayout(PIECE, (SwarmFile("w.safetensors", len(DATA), 0, 4, "w.safetensors"),))
    admitted: list[int] = []
    corrupt: list[tuple[int, str]] = []
    gate = PieceAdmission(
        layout,
        manifest,
        on_admitted=admitted.append,
        on_corrupt=lambda p, w: corrupt.append((p, w)),
    )
    gate.cache = NodeCache(CacheConfig(disk_dir=tmp_path / "disk", ram_dir=tmp_path / "ram"))
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
