"""The designated fetcher's gate on a real libtorrent torrent with no peers connected."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import libtorrent as lt
import pytest

from pagefault.api import make_piece_manifest
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.pacing import FETCH_LEAD_BYTES, FetchGate, RateCap
from pagefault.swarm.striped import StripedTorrent
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from tests.polling import eventually
from tests.swarm.nodes import tls_node

PIECE = 64 * 1024


GateFactory = Callable[..., tuple[FetchGate, threading.Event]]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[GateFactory]:
    """A gate over a fresh model's striped torrent, ``stripes`` torrents (no peers)."""
    entry = write_synthetic_checkpoint(tmp_path / "m", SyntheticConfig(1 << 20, shards=1))
    manifest = make_piece_manifest(entry, piece_size=PIECE)
    session = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False})
    stop = threading.Event()

    def make(stripes: int, link_mbit: float = 0.0) -> tuple[FetchGate, threading.Event]:
        ca = SwarmCA.create().cert_pem
        torrent = StripedTorrent.add(session, manifest, ca, tmp_path / "dl", stripes=stripes)
        return FetchGate(torrent, stop, link_mbit=link_mbit), stop

    yield make
    stop.set()


def test_a_rate_cap_spaces_reads_and_earns_no_burst_when_idle() -> None:
    now = [100.0]
    cap = RateCap(1000.0, clock=lambda: now[0])
    assert [cap.reserve(500) for _ in range(3)] == [0.0, 0.5, 1.0]
    now[0] += 10.0  # idle: the next read starts at once, the one after waits its turn
    assert [cap.reserve(500) for _ in range(2)] == [0.0, 0.5]


def test_a_root_of_one_of_two_stripes_reads_the_origin_at_half_its_link(
    gate: GateFactory,
) -> None:
    fetch_gate, _ = gate(2, 40.0)
    fetch_gate.update(frozenset({0}), fleet_size=4)
    payload = 40e6 / 8 * 1448 / 1514  # what a 40 Mbit/s link carries over TCP
    assert fetch_gate.origin_rate == pytest.approx(payload / 2)
    fetch_gate.update(frozenset({0, 1}), fleet_size=1)  # alone: every stripe, the whole link
    assert fetch_gate.origin_rate == pytest.approx(payload)
    fetch_gate.update(frozenset(), fleet_size=4)
    assert fetch_gate.origin_rate is None
    chain, _ = gate(1, 40.0)
    chain.update(frozenset({0}), fleet_size=4)
    assert chain.origin_rate is None  # one stripe: the chain's head reads at full speed
    undeclared, _ = gate(2)
    undeclared.update(frozenset({0}), fleet_size=4)
    assert undeclared.origin_rate is None


def test_a_lone_node_reads_its_first_stripe_at_once(
    gate: GateFactory,
) -> None:
    fetch_gate, _ = gate(2)
    fetch_gate.update(frozenset({0, 1}), fleet_size=1)
    assert fetch_gate.allows(0) and fetch_gate.allows(2)
    assert not fetch_gate.allows(1)  # the other stripe, skipped until LONE_DELAY_S


def test_pieces_of_stripes_it_does_not_root_are_refused(
    gate: GateFactory,
) -> None:
    fetch_gate, _ = gate(2)
    fetch_gate.update(frozenset({1}), fleet_size=3)
    assert not fetch_gate.allows(0)
    assert not fetch_gate.allows(4)


def test_a_fetcher_with_peers_due_reads_only_its_lead(
    gate: GateFactory,
) -> None:
    fetch_gate, stop = gate(1)
    fetch_gate.update(frozenset({0}), fleet_size=4)
    lead = FETCH_LEAD_BYTES // PIECE
    assert fetch_gate.lead == lead
    assert fetch_gate.allows(lead - 1)  # within the lead of a peer that has nothing yet
    assert _blocks(fetch_gate, lead, stop)  # beyond it: waits for a peer to catch up


def test_a_fleet_that_shrank_to_this_node_reads_nothing_at_first(
    gate: GateFactory,
) -> None:
    fetch_gate, _ = gate(1)
    fetch_gate.update(frozenset({0}), fleet_size=3)
    fetch_gate.update(frozenset({0}), fleet_size=1)  # e.g. Redis lost its state
    assert not fetch_gate.allows(0)  # skipped, not waited for: no feeder thread is held


def _blocks(fetch_gate: FetchGate, piece: int, stop: threading.Event) -> bool:
    """``allows(piece)`` is still waiting after a while, and refuses once the job stops."""
    answer: list[bool] = []
    waiter = threading.Thread(target=lambda: answer.append(fetch_gate.allows(piece)))
    waiter.start()
    waiter.join(0.3)  # far below LEAD_WAIT_S and LONE_DELAY_S; an open gate answers in ms
    waiting = waiter.is_alive()
    stop.set()
    waiter.join()
    return waiting and answer == [False]


def test_with_two_stripes_the_lead_counts_pieces_of_the_fetchers_stripe(
    gate: GateFactory,
) -> None:
    fetch_gate, stop = gate(2)
    fetch_gate.update(frozenset({0}), fleet_size=4)
    assert fetch_gate.allows(2 * (fetch_gate.lead - 1))  # its stripe's lead-th piece
    assert _blocks(fetch_gate, 2 * fetch_gate.lead, stop)


def test_a_fetcher_holds_off_while_a_connected_peer_holds_more_of_its_stripe(
    tmp_path: Path,
) -> None:
    """A placement that made this node fetcher while the old one still reads the origin
    (its beat lapsed, or Redis restarted): the old one is the peer ahead of it."""
    entry = write_synthetic_checkpoint(tmp_path / "m", SyntheticConfig(1 << 20, shards=1))
    manifest = make_piece_manifest(entry, piece_size=PIECE)
    ca = SwarmCA.create()

    up_session, upstream = tls_node(ca, manifest, tmp_path, "old-fetcher")
    this_session, torrent = tls_node(ca, manifest, tmp_path, "this")
    torrent.handles[0].prioritize_pieces([0] * torrent.layout.num_pieces)  # stays behind
    data = (entry.parent / upstream.layout.files[0].name).read_bytes()
    for piece in range(4):
        upstream.add_piece(piece, data[piece * PIECE : (piece + 1) * PIECE])
    stop = threading.Event()
    fetch_gate = FetchGate(torrent, stop)
    fetch_gate.update(frozenset({0}), fleet_size=3)
    assert fetch_gate.allows(5)  # no peer yet: within its lead
    assert eventually(lambda: upstream.stripe_pieces(0) == 4, 20.0), "timed out"
    torrent.connect_peer(0, ("127.0.0.1", up_session.ssl_listen_port()))
    assert eventually(lambda: any(p.num_pieces == 4 for p in torrent.peers_of(0)), 20.0), (
        "timed out"
    )
    assert not fetch_gate.allows(5)  # nobody has it, but the peer ahead is fetching
    stop.set()
    del up_session, this_session  # the sessions lived until here
