"""A model's swarm torrent, built from its piece manifest alone (no bytes needed).

The torrent is BitTorrent v2 only (per-file SHA-256 Merkle trees, so libtorrent verifies
every piece from a peer against the manifest's ``roots``), and an SSL torrent: its info
dict carries the swarm CA certificate, so libtorrent only talks to peers presenting a
certificate that CA signed. Same manifest and CA, same bytes, same info-hash, on every
node: nobody has to download a torrent before it can start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libtorrent as lt

from pagefault.errors import IntegrityError
from pagefault.manifest import PieceManifest
from pagefault.manifest.merkle import file_root
from pagefault.sources.resolve import SPECULATIVE_HEADER_BYTES

__all__ = ["SwarmFile", "TorrentLayout", "build_torrent"]

TORRENT_DIR = "model"  # the torrent's name (a multi-file torrent's directory)


def build_torrent(
    manifest: PieceManifest, ca_pem: bytes, *, stripe: tuple[int, int] = (0, 1)
) -> bytes:
    """The bencoded v2 SSL torrent of every non-empty file of ``manifest``.

    ``stripe=(index, count)`` with ``count > 1``: the torrent of one stripe
    (:mod:`pagefault.swarm.striped`), the same files under its own info-hash."""
    tree: dict[bytes, Any] = {}
    layers: dict[bytes, bytes] = {}
    for entry in manifest.files:
        if not entry.size:
            continue
        if not entry.roots:
            raise IntegrityError(
                f"piece manifest entry {entry.name!r} has no BitTorrent v2 roots; "
                "rebuild it with `pagefault manifest build`"
            )
        roots = [bytes.fromhex(r) for r in entry.roots]
        root = file_root(roots, manifest.piece_size)
        tree[entry.name.encode()] = {b"": {b"length": entry.size, b"pieces root": root}}
        if len(roots) > 1:
            layers[root] = b"".join(roots)
    info: dict[bytes, Any] = {
        b"name": TORRENT_DIR.encode(),
        b"piece length": manifest.piece_size,
        b"meta version": 2,
        b"file tree": tree,
        b"ssl-cert": ca_pem,
    }
    index, count = stripe
    if count > 1:
        info[b"pagefault stripe"] = f"{index}/{count}".encode()
    torrent: dict[bytes, Any] = {b"info": info, b"piece layers": layers}
    return bytes(lt.bencode(torrent))


@dataclass(frozen=True)
class SwarmFile:
    """Where one model file sits in the torrent: its global piece range and its path."""

    name: str
    size: int
    first_piece: int
    pieces: int
    relative_path: str  # under the torrent's save path, as libtorrent lays it out

    def path(self, save_path: Path) -> Path:
        return save_path / self.relative_path


@dataclass(frozen=True)
class TorrentLayout:
    """Piece geometry of a torrent, read back from libtorrent (it decides file order)."""

    piece_size: int
    files: tuple[SwarmFile, ...]

    @classmethod
    def of(cls, info: lt.torrent_info) -> TorrentLayout:
        storage = info.layout()
        files = []
        for index in range(storage.num_files()):
            if storage.file_flags(index) & lt.file_storage.flag_pad_file:
                continue
            size = storage.file_size(index)
            first = storage.piece_index_at_file(index)
            count = -(-size // info.piece_length())
            name, path = storage.file_name(index), storage.file_path(index)
            files.append(SwarmFile(name, size, first, count, path))
        return cls(info.piece_length(), tuple(files))

    @property
    def num_pieces(self) -> int:
        return sum(f.pieces for f in self.files)

    @property
    def header_pieces(self) -> tuple[int, ...]:
        """The pieces under each file's first read by a loader (its header, read with a
        speculative ``SPECULATIVE_HEADER_BYTES``): a loader needs every shard's header before
        it can plan, so these go first (origin fetch order, libtorrent deadlines)."""
        count = -(-SPECULATIVE_HEADER_BYTES // self.piece_size)
        return tuple(
            piece
            for f in self.files
            for piece in range(f.first_piece, f.first_piece + min(count, f.pieces))
        )

    def fetch_order(self) -> list[int]:
        """Every piece: the headers first, then in order."""
        first = self.header_pieces
        rest = set(first)
        return [*first, *(p for p in range(self.num_pieces) if p not in rest)]

    def file(self, name: str) -> SwarmFile:
        return next(f for f in self.files if f.name == name)

    def locate(self, piece: int) -> tuple[SwarmFile, int]:
        """The file holding global piece ``piece`` and the piece's offset in it."""
        for entry in self.files:
            if entry.first_piece <= piece < entry.first_piece + entry.pieces:
                return entry, (piece - entry.first_piece) * self.piece_size
        raise IndexError(f"piece {piece} is not in the torrent")
