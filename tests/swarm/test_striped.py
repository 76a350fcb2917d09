"""One torrent per stripe over the same files: pieces route by stripe, the bytes land once."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import libtorrent as lt

from pagefault.api import make_piece_manifest
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.striped import StripedTorrent
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from tests.polling import eventually
from tests.swarm.nodes import tls_node

PIECE = 64 * 1024
T = TypeVar("T")


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
    eventually(lambda: all(torrent.have_piece(p) for p in pieces), 20, 0.05)
    for stripe, handle in enumerate(torrent.handles):  # each holds only its own stripe
        assert [handle.have_piece(p) for p in pieces] == [p % 2 == stripe for p in pieces]
    for f in torrent.layout.files:
        assert f.path(tmp_path / "dl").read_bytes() == (tmp_path / "m" / f.name).read_bytes()


def test_a_torrent_with_no_connection_dials_its_upstream_at_once(tmp_path: Path) -> None:
    """libtorrent dials given peers on its once-a-second tick; with the tick stretched to
    5 s here, only the connect boost (pause and resume) joins within 2 s."""
    seconds, paused = _in_worker(_dial_upstream, tmp_path, tick_interval=5000)
    assert seconds < 2.0
    assert not paused


def _in_worker(work: Callable[..., T], root: Path, **settings: int) -> T:
    """``work(root, **settings)`` in a process of its own. libtorrent 2.1 may crash
    tearing two TLS sessions down, so the work keeps its sessions (``_HELD``) until the
    pool kills the process; a crash before the answer fails the test instead of hanging."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply_async(work, (root,), settings).get(timeout=60)


_HELD: list[object] = []  # a worker's sessions, alive until the pool ends the worker


def _dial_upstream(root: Path, **settings: int) -> tuple[float, bool]:
    """Seconds from ``connect_peer`` until a fresh node is connected to its upstream, and
    whether its torrent was left paused. Runs in a worker (``_in_worker``)."""
    entry = write_synthetic_checkpoint(root / "m", SyntheticConfig(1 << 20, shards=1))
    manifest = make_piece_manifest(entry, piece_size=PIECE)
    ca = SwarmCA.create()
    up_session, _ = tls_node(ca, manifest, root, "up", **settings)
    down_session, torrent = tls_node(ca, manifest, root, "down", **settings)
    _HELD.extend([up_session, down_session])
    began = time.monotonic()
    torrent.connect_peer(0, ("127.0.0.1", up_session.ssl_listen_port()))
    while not torrent.peers_of(0) and time.monotonic() - began < 10:
        time.sleep(0.01)
    return time.monotonic() - began, bool(torrent.handles[0].status().paused)


def test_a_child_cut_by_its_upstreams_first_dial_is_back_at_once(tmp_path: Path) -> None:
    """An upstream's first dial (pause and resume) cuts a child whose handshake is under
    way, so the upstream does not know where to dial it back. This test cannot aim at
    that moment: it pauses and resumes the upstream's torrent with the child connected,
    and the child listens on another loopback address than the one it dials from, so the
    upstream's dial back fails as it would. The child's ``redial`` joins again within a
    second, where libtorrent's own redial waits for its tick (stretched to 5 s here; the
    child has the agent's ``min_reconnect_time`` of 0). A second drop of the same link
    is left to libtorrent."""
    linked, cut, seconds, again = _in_worker(_cut_and_redial, tmp_path, tick_interval=5000)
    assert not linked
    assert cut
    assert seconds < 1.0
    assert not again


def _cut_and_redial(root: Path, **settings: int) -> tuple[bool, bool, float, bool]:
    """(whether a redial of a link that is up dials, whether the upstream's dial cut the
    child, seconds until the child's redial joined, whether a second redial of that link
    dials). Runs in a worker (``_in_worker``)."""
    entry = write_synthetic_checkpoint(root / "m", SyntheticConfig(1 << 20, shards=1))
    manifest = make_piece_manifest(entry, piece_size=PIECE)
    ca = SwarmCA.create()
    up_session, upstream = tls_node(ca, manifest, root, "up", **settings)
    child_session, child = tls_node(
        ca,
        manifest,
        root,
        "down",
        listen_interfaces="127.0.0.2:0s",
        min_reconnect_time=0,
        **settings,
    )
    _HELD.extend([up_session, child_session])
    address = ("127.0.0.1", up_session.ssl_listen_port())
    child.connect_peer(0, address)
    eventually(lambda: bool(upstream.peers_of(0)), 10.0, 0.005)  # handshake done: link up
    linked = child.redial(0, address)
    upstream.handles[0].pause()  # what the upstream's first dial does
    upstream.handles[0].resume()
    cut = eventually(lambda: not child.peers_of(0), 10.0, 0.005)
    began = time.monotonic()
    child.redial(0, address)
    eventually(lambda: bool(child.peers_of(0)), 10.0, 0.005)
    return linked, cut, time.monotonic() - began, child.redial(0, address)
