"""A swarm node as the agent builds it, without the agent: a TLS libtorrent session on
loopback and a model's striped torrent in it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import libtorrent as lt

from pagefault.manifest import PieceManifest
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.striped import StripedTorrent


def tls_node(
    ca: SwarmCA, manifest: PieceManifest, root: Path, name: str, **settings: Any
) -> tuple[lt.session, StripedTorrent]:
    """Node ``name`` (its certificate from ``ca``) holding ``manifest``'s torrent under
    ``root / name``; ``settings`` override libtorrent's. Keep the session referenced for
    as long as the torrent is used."""
    session = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0s",
            "close_redundant_connections": False,  # as agents have it
            "enable_dht": False,
            **settings,
        }
    )
    torrent = StripedTorrent.add(session, manifest, ca.cert_pem, root / name, node=ca.issue(name))
    return session, torrent
