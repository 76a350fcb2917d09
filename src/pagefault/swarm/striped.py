"""A model's swarm as one torrent per stripe, so a peer can only ask for what it is fed.

With two stripes each node is interior in one tree and a leaf in the other. In a single
torrent libtorrent lets any connected peer request any piece it lacks, so a child asked
its stripe-0 parent for stripe-1 pieces too: interior nodes uploaded up to 1.9x and the
trees ran 1.2-2x slower than their placement allows (docs/benchmarks.md). Here stripe
``s`` is its own torrent over the same files (its info dict names the stripe, so its
info-hash differs; the other stripes' pieces have priority 0). A node meets only its
stripe-``s`` parent and children in torrent ``s``, so what flows is the placement.

Piece indices stay global: every call routes ``piece`` to the torrent of
``piece % stripes``. With one stripe (the chain) this is the plain torrent, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import libtorrent as lt

from pagefault.manifest import PieceManifest
from pagefault.swarm.credentials import NodeCredentials
from pagefault.swarm.torrent import TorrentLayout, build_torrent

__all__ = ["StripedTorrent"]

_WANTED, _SKIPPED = 4, 0  # libtorrent's default piece priority, and "do not download"
_CHECKING = (
    lt.torrent_status.states.checking_files,
    lt.torrent_status.states.checking_resume_data,
)
_FLAGS = (
    lt.torrent_flags.disable_pex
    | lt.torrent_flags.sequential_download
    | lt.torrent_flags.disable_dht
    | lt.torrent_flags.disable_lsd
    | lt.torrent_flags.apply_ip_filter  # Agent.block: no links with a corrupt node
)


@dataclass(frozen=True)
class StripedTorrent:
    """The per-stripe torrents of one model on this node; piece ``p`` lives in stripe
    ``p % len(handles)``."""

    handles: tuple[lt.torrent_handle, ...]
    layout: TorrentLayout
    session: lt.session = field(compare=False, repr=False)  # whose IP filter a dial obeys
    _dialed: set[int] = field(default_factory=set, compare=False, repr=False)  # stripes
    _redialed: set[tuple[int, tuple[str, int]]] = field(
        default_factory=set, compare=False, repr=False
    )

    @classmethod
    def add(
        cls,
        session: lt.session,
        manifest: PieceManifest,
        ca_pem: bytes,
        save_path: Path,
        *,
        stripes: int = 1,
        node: NodeCredentials | None = None,
    ) -> StripedTorrent:
        """Add every stripe's torrent (all saving into ``save_path``) to ``session``."""
        handles = []
        layout: TorrentLayout | None = None
        for stripe in range(stripes):
            info = lt.torrent_info(build_torrent(manifest, ca_pem, stripe=(stripe, stripes)))
            layout = layout or TorrentLayout.of(info)
            params = lt.add_torrent_params()
            params.ti = info
            params.save_path = str(save_path)
            params.flags = _FLAGS
            if stripes > 1:
                params.piece_priorities = [
                    _WANTED if piece % stripes == stripe else _SKIPPED
                    for piece in range(layout.num_pieces)
                ]
            handle = session.add_torrent(params)
            if node is not None:
                handle.set_ssl_certificate_buffer(node.cert_pem.decode(), node.key_pem.decode(), "")
            handles.append(handle)
        assert layout is not None, "stripes >= 1"
        return cls(tuple(handles), layout, session)

    @property
    def stripes(self) -> int:
        return len(self.handles)

    def handle_of(self, piece: int) -> lt.torrent_handle:
        return self.handles[piece % self.stripes]

    def owns(self, handle: lt.torrent_handle) -> bool:
        """Whether a libtorrent alert's ``handle`` is one of this model's torrents."""
        return self.stripe_of(handle) is not None

    def have_piece(self, piece: int) -> bool:
        return bool(self.handle_of(piece).have_piece(piece))

    def checking(self) -> bool:
        """Whether libtorrent is still checking the files it found on disk: until it is
        done, a piece they hold reads as missing (``have_piece`` is False)."""
        return any(
            handle.is_valid() and handle.status().state in _CHECKING for handle in self.handles
        )

    def held_pieces(self) -> list[int]:
        """Every piece libtorrent has, over every stripe (one status query per stripe)."""
        held = []
        for stripe, handle in enumerate(self.handles):
            bits = handle.status(lt.status_flags_t.query_pieces).pieces
            held += [p for p in range(stripe, len(bits), self.stripes) if bits[p]]
        return sorted(held)

    def add_piece(self, piece: int, data: bytes, flags: int = 0) -> None:
        self.handle_of(piece).add_piece(piece, data, flags)

    def read_piece(self, piece: int) -> None:
        self.handle_of(piece).read_piece(piece)

    def set_piece_deadline(self, piece: int, deadline_ms: int) -> None:
        self.handle_of(piece).set_piece_deadline(piece, deadline_ms)

    def connect_peer(self, stripe: int, address: tuple[str, int]) -> None:
        """Join ``address`` in ``stripe``'s torrent (a no-op while connected).

        libtorrent dials the peers it is given only on its once-a-second tick, so a node
        joining a chain waited up to a second per hop before its first piece. Resuming a
        paused torrent dials at once (its "connect boost"), so the first time a stripe is
        given an upstream, the torrent is paused and resumed. That cuts the children that
        dialed this node first (in one sixteen-node fleet a child's link, up before its
        upstream's first beat, kept the upstream from pausing, and the eleven nodes behind
        it started a second late); they are linked again by this dial or their
        ``redial``. Later dials wait for the tick."""
        handle = self.handles[stripe % self.stripes]
        handle.connect_peer(address)
        if stripe not in self._dialed:
            _dial_now(handle)
        self._dialed.add(stripe)

    def redial(self, stripe: int, address: tuple[str, int]) -> bool:
        """Dial ``address`` in ``stripe``'s torrent again at once, the first time that
        link drops, unless a link to its host is up again or the session refuses the host
        (``Agent.block``: it sent corrupt pieces, and its link closed on purpose); False:
        nothing dialed.

        An upstream that had just joined cuts the link of a child whose handshake was
        under way when its own first dial paused its torrent (``connect_peer``); libtorrent
        would redial on its once-a-second tick, 1-2 s in which the child and every node
        behind it got nothing (in 3 of 11 eight-node fleets the nodes behind one such cut
        started 0.9-1.4 s late). Dialing at once cuts this node's own children the same
        way; those whose address it knows it dials back itself (they are linked again
        when they look), the others redial in turn: a wave of handshakes down the chain,
        milliseconds each. Two nodes dialing each other at once can each drop the
        other's link as a duplicate, so a node looks first. Once per link, so an upstream
        that keeps refusing cannot make a node cut its children over and over."""
        handle = self.handles[stripe % self.stripes]
        if (
            (stripe, address) in self._redialed
            or self.session.get_ip_filter().access(address[0]) != 0
            or any(peer.ip[0] == address[0] for peer in handle.get_peer_info())
        ):
            return False
        self._redialed.add((stripe, address))
        handle.connect_peer(address)
        _dial_now(handle)
        return True

    def stripe_of(self, handle: lt.torrent_handle) -> int | None:
        """Which stripe a libtorrent alert's ``handle`` carries (None: not this model's)."""
        return next((i for i, own in enumerate(self.handles) if own == handle), None)

    def stripe_pieces(self, stripe: int) -> int:
        """How many of ``stripe``'s pieces this node has (as its peers count them)."""
        return int(self.handles[stripe].status().num_pieces)

    def peers_of(self, piece: int) -> list[lt.peer_info]:
        """The peers of the torrent that carries ``piece``."""
        return list(self.handle_of(piece).get_peer_info())

    def payload_totals(self) -> tuple[int, int]:
        """Payload bytes (downloaded, uploaded) from and to peers, over every stripe."""
        statuses = [handle.status() for handle in self.handles]
        return (
            sum(s.total_payload_download for s in statuses),
            sum(s.total_payload_upload for s in statuses),
        )

    def report(self) -> Iterator[str]:
        """One line per stripe (pieces, state, peers): what a stall log shows."""
        for stripe, handle in enumerate(self.handles):
            status = handle.status()
            peers = [
                f"{p.ip[0]}:{p.ip[1]} has {p.num_pieces} dl {p.downloading_piece_index}"
                f" q {p.download_queue_length} flags {int(p.flags):#x}"
                for p in handle.get_peer_info()
            ]
            state = f"{status.num_pieces} pieces, state {status.state}"
            yield f"stripe {stripe}: {state}, peers {peers}"


def _dial_now(handle: lt.torrent_handle) -> None:
    """Have libtorrent dial the torrent's known peers now, not at its next tick: resuming
    a paused torrent dials at once. It drops the torrent's open links, too."""
    handle.pause()
    handle.resume()
