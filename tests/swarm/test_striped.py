"""One torrent per stripe over the same files: pieces route by stripe, the bytes land once."""

from __future__ import annotations

import time
from pathlib import Path

import libtorrent as lt

from pagefault.api import make_piece_manifest
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.striped import StripedTorrent
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint

PIECE = 64 * 1024


def test_each_stripe_is_its_own_torrent_and_the_files_fill_from_both(tmp_path: Path) -> None:
    entry = write_synthetic_checkpoint(tmp_path / "m", SyntheticConfig(1 << 20, shards=2))
    manifest = make_piece_manifest(entry, piece_size=PIECE)
    session = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False})
    ca = SwarmCA.create().cert_pem
    torrent = StripedTorrent.add(session, manifest, ca, tmp_path / "dl", stripes=2)
    chain = StripedTorrent.add(session, manifest, ca, tmp_path / "chain")
    hashes = {str(h.info_hashes().v2) for h in (*torrent.handles, *chain.handles)}
    assert len(hashes) == 3  # the chain's torrent is unchanged; each stripe's is its own
    assert torrent.layout == chain.layout
    for f in torrent.layout.files:
        data = (tmp_path / "m" / f.name).read_bytes()
        for k in range(f.pieces):
            torrent.add_piece(f.first_piece + k, data[k * PIECE : (k + 1) * PIECE])
    pieces = range(torrent.layout.num_pieces)
    deadline = time.monotonic() + 20
    while not all(torrent.have_piece(p) for p in pieces) and time.monotonic() < deadline:
        time.sleep(0.05)
    for stripe, handle in enumerate(torrent.handles):  # each holds only its own stripe
        assert [handle.have_piece(p) for p in pieces] == [p % 2 == stripe for p in pieces]
    for f in torrent.layout.files:
        assert f.path(tmp_path / "dl").read_bytes() == (tmp_path / "m" / f.name).read_bytes()
