"""The designated fetcher's gate on a real libtorrent torrent with no peers connected."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import libtorrent as lt
import pytest

from pagefault.api import make_piece_manifest
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.pacing import FETCH_LEAD_BYTES, FetchGate
from pagefault.swarm.striped import StripedTorrent
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint

PIECE = 64 * 1024


GateFactory = Callable[[int], tuple[FetchGate, threading.Event]]


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[GateFactory]:
    """A gate over a fresh model's striped torrent, ``stripes`` torrents (no peers)."""
    entry = write_synthetic_checkpoint(tmp_path / "m", SyntheticConfig(1 << 20, shards=1))
    manifest = make_piece_manifest(entry, piece_size=PIECE)
    session = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False})
    stop = threading.Event()

    def make(stripes: int) -> tuple[FetchGate, threading.Event]:
        ca = SwarmCA.create().cert_pem
        torrent = StripedTorrent.add(session, manifest, ca, tmp_path / "dl", stripes=stripes)
        return FetchGate(torrent, stop), stop

    yield make
    stop.set()


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
