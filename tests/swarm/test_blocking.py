"""A host that sent corrupt pieces is refused by every torrent of the node's agent."""

from __future__ import annotations

from pathlib import Path

import libtorrent as lt

from pagefault.api import make_piece_manifest
from pagefault.cache import CacheConfig
from pagefault.swarm.agent import Agent
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.striped import StripedTorrent
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint


def test_a_blocked_host_is_refused_in_every_stripe_and_no_other(tmp_path: Path) -> None:
    """libtorrent bans a peer's address and port only: the corrupt node came back from new
    ports and, linked and holding every piece, kept a fetcher from reading the piece it
    had spoiled (tests/swarm/test_swarm.py, the corrupt peer, timed out twice in 22 runs)."""
    config = AgentConfig(node="n1", listen="127.0.0.1:0", api="127.0.0.1:0", data_dir=tmp_path)
    agent = Agent(config, CacheConfig(enabled=False))
    entry = write_synthetic_checkpoint(tmp_path / "m", SyntheticConfig(1 << 20, shards=1))
    manifest = make_piece_manifest(entry, piece_size=64 * 1024)
    ca = SwarmCA.create().cert_pem
    torrent = StripedTorrent.add(agent.session, manifest, ca, tmp_path / "dl", stripes=2)
    agent.block("10.9.8.7")
    rules = agent.session.get_ip_filter()
    assert rules.access("10.9.8.7") != 0
    assert rules.access("10.9.8.6") == rules.access("10.9.8.8") == 0
    assert all(handle.flags() & lt.torrent_flags.apply_ip_filter for handle in torrent.handles)
    assert not torrent.redial(0, ("10.9.8.7", 6881))  # its link closed on purpose: no dial
