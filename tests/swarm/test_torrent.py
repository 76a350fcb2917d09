"""Torrents built from a manifest match libtorrent's own hashing of the same files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import libtorrent as lt
import pytest

from pagefault.api import make_piece_manifest
from pagefault.errors import IntegrityError
from pagefault.manifest import FileDigest, PieceHasher, PieceManifest
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.torrent import TorrentLayout, build_torrent
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint

PIECE = 64 * 1024


@pytest.mark.parametrize("size", [1, 16 * 1024, 50_000, PIECE, PIECE + 1, 5 * PIECE + 777])
def test_file_root_matches_libtorrent(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f.safetensors").write_bytes(data)
    made = lt.create_torrent(
        lt.list_files(str(tmp_path / "f.safetensors")), PIECE, lt.create_torrent.v2_only
    )
    lt.set_piece_hashes(made, str(tmp_path))
    theirs = made.generate()
    hasher = PieceHasher(PIECE)
    for start in range(0, size, 7777):  # odd update sizes: blocks straddle updates
        hasher.update(data[start : start + 7777])
    digest = hasher.finish("f.safetensors")
    ours = lt.bdecode(build_torrent(PieceManifest(PIECE, (digest,)), SwarmCA.create().cert_pem))
    want = theirs[b"info"][b"file tree"][b"f.safetensors"][b""][b"pieces root"]
    assert ours[b"info"][b"file tree"][b"f.safetensors"][b""][b"pieces root"] == want
    assert ours.get(b"piece layers", {}) == theirs.get(b"piece layers", {})


def test_libtorrent_accepts_every_piece_of_a_model_and_rejects_a_bad_one(tmp_path: Path) -> None:
    entry = write_synthetic_checkpoint(tmp_path / "m", SyntheticConfig(2 << 20, shards=2))
    manifest = make_piece_manifest(entry, piece_size=PIECE)
    info = lt.torrent_info(build_torrent(manifest, SwarmCA.create().cert_pem))
    layout = TorrentLayout.of(info)
    assert {f.name for f in layout.files} == {f.name for f in manifest.files}
    session = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            # status and errors only: the log categories would crowd the alert queue
            "alert_mask": lt.alert.category_t.status_notification
            | lt.alert.category_t.error_notification,
        }
    )
    params = lt.add_torrent_params()
    params.ti, params.save_path = info, str(tmp_path / "dl")
    handle = session.add_torrent(params)
    # Add pieces only once libtorrent has checked the (absent) files, so they meet the hash
    # check and not the torrent's start-up (one CI run saw no hash_failed alert in 20 s).
    checked = _drain(session, lt.torrent_checked_alert)
    assert any(isinstance(a, lt.torrent_checked_alert) for a in checked)
    first = layout.files[0]
    bad = bytearray((tmp_path / "m" / first.name).read_bytes()[:PIECE])
    bad[0] ^= 1
    handle.add_piece(first.first_piece, bytes(bad), 0)
    for f in layout.files:
        data = (tmp_path / "m" / f.name).read_bytes()
        for k in range(f.pieces):
            if f is not first or k:
                handle.add_piece(f.first_piece + k, data[k * PIECE : (k + 1) * PIECE], 0)
    alerts = _drain(session, lt.hash_failed_alert, done=lambda: all(handle.status().pieces[1:]))
    assert any(isinstance(a, lt.hash_failed_alert) for a in alerts), [a.message() for a in alerts]
    assert not handle.have_piece(first.first_piece)


def test_manifest_without_v2_roots_is_refused() -> None:
    old = PieceManifest(PIECE, (FileDigest("a.safetensors", 10, ("0" * 64,)),))
    with pytest.raises(IntegrityError, match="no BitTorrent v2 roots"):
        build_torrent(old, SwarmCA.create().cert_pem)


def _drain(
    session: lt.session, until: type, done: Callable[[], bool] = lambda: True
) -> list[object]:
    """Alerts until one of type ``until`` came and ``done()`` holds (or 20 s passed)."""
    alerts: list[object] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        session.wait_for_alert(100)
        alerts += session.pop_alerts()
        if any(isinstance(a, until) for a in alerts) and done():
            break
    return alerts
