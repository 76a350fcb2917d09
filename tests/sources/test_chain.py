"""The source chain: first link that delivers, fall-through on failure or corrupt bytes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from pagefault.cache import CacheConfig, FileRecord, NodeCache
from pagefault.cache.source import CachedFileSource
from pagefault.errors import IntegrityError, SourceError
from pagefault.manifest import hash_piece
from pagefault.sources import MemorySource
from pagefault.sources.base import Buffer
from pagefault.sources.chain import ChainSource, Link, SourceCounters

DATA = bytes(range(256)) * 64  # 16 KiB: one piece
PIECE = len(DATA)


class DownSource(MemorySource):
    """A link whose filler went away: every read fails, and counts how often it was asked."""

    def __init__(self, name: str, data: bytes) -> None:
        super().__init__(name, data)
        self.asked = 0

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        self.asked += 1
        raise SourceError(f"{self.name}: agent http://127.0.0.1:1 refused the connection")


def corrupt(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


def read(chain: ChainSource, **kwargs: object) -> bytes:
    out = bytearray(PIECE)
    chain.read_checked(0, [memoryview(out)], **kwargs)  # type: ignore[arg-type]
    return bytes(out)


def test_a_failed_link_is_skipped_for_the_rest_of_the_load_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counters = SourceCounters()
    peers = DownSource("swarm:x", DATA)
    chain = ChainSource([Link("peers", peers), Link("origin", MemorySource("x", DATA))], counters)
    with caplog.at_level(logging.WARNING, logger="pagefault.sources"):
        assert read(chain) == DATA
        assert read(chain) == DATA
    assert peers.asked == 1, "the dead link is not asked again"
    assert caplog.text.count("peers link failed") == 1
    assert "refused the connection" in caplog.text
    assert counters.bytes_by_source()["origin"] == 2 * PIECE
    assert counters.bytes_by_source()["peers"] == 0


def test_corrupt_bytes_from_a_link_are_read_from_the_next() -> None:
    counters = SourceCounters()
    links = [
        Link("peers", MemorySource("p", corrupt(DATA))),
        Link("origin", MemorySource("o", DATA)),
    ]
    chain = ChainSource(links, counters)
    want = hash_piece([DATA])
    assert read(chain, check=lambda got: hash_piece(got) == want) == DATA
    assert counters.corrupt_pieces == 1
    assert counters.bytes_by_source() == {
        "local": 0,
        "ram": 0,
        "disk": 0,
        "peers": 0,
        "origin": PIECE,
    }


def test_corrupt_bytes_from_the_last_link_are_an_integrity_error() -> None:
    chain = ChainSource([Link("origin", MemorySource("o", corrupt(DATA)))], SourceCounters())
    want = hash_piece([DATA])
    with pytest.raises(IntegrityError, match=r"o: bytes \[0, 16384\) from origin do not match"):
        read(chain, check=lambda got: hash_piece(got) == want)


def test_the_last_links_failure_is_the_loads_failure() -> None:
    chain = ChainSource([Link("origin", DownSource("o", DATA))], SourceCounters())
    with pytest.raises(SourceError, match="refused"):
        read(chain)


def test_unknown_link_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="link kind 'cdn'"):
        Link("cdn", MemorySource("x", DATA))


def test_the_cache_drops_a_corrupt_swarm_piece_and_keeps_the_origins(tmp_path: Path) -> None:
    """The cache checks what its chain delivers: a bad swarm copy is never stored or
    handed out; the origin's copy is, and it is what the next read finds."""
    node = NodeCache(
        CacheConfig(disk_dir=tmp_path / "disk", ram_dir=tmp_path / "ram", piece_size=PIECE)
    )
    counters = SourceCounters()
    chain = ChainSource(
        [Link("peers", MemorySource("p", corrupt(DATA))), Link("origin", MemorySource("o", DATA))],
        counters,
    )
    digest = hash_piece([DATA])
    source = CachedFileSource(
        chain,
        node,
        FileRecord("x.safetensors", PIECE, "k"),
        piece_size=PIECE,
        digests=[digest],
        published=True,
        counters=counters,
    )
    out = bytearray(PIECE)
    source.read_into(0, [memoryview(out)])
    assert bytes(out) == DATA
    assert counters.corrupt_pieces == 1
    assert node.find(digest) is not None
    assert node.find(hash_piece([corrupt(DATA)])) is None


class AgentLikeSource(MemorySource):
    """Fills the node cache over time, as the agent does: ``await_range`` stores the
    range's pieces there (what admission does) and records each wait. With ``seed``,
    the agent's disk tier links to that file instead of copying, as admission does."""

    def __init__(self, data: bytes, node: NodeCache, seed: Path | None = None) -> None:
        super().__init__("swarm:x", data)
        self.data = data
        self.node = node
        self.seed = seed
        self.waits: list[tuple[int, int]] = []
        if seed is not None:
            seed.write_bytes(data)

    def await_range(self, offset: int, length: int) -> None:
        self.waits.append((offset, length))
        for start in range(offset, offset + length, PIECE):
            piece = self.data[start : start + PIECE]
            if self.node.holds(hash_piece([piece])):
                continue
            held_at = None if self.seed is None else (self.seed.absolute(), start)
            self.node.store(hash_piece([piece]), [memoryview(piece)], held_at=held_at)


def through_agent(
    node: NodeCache, swarm: AgentLikeSource, counters: SourceCounters
) -> CachedFileSource:
    """``swarm``'s file read through ``node``'s cache: the agent link, then the origin."""
    chain = ChainSource([Link("peers", swarm, fills_cache=True), Link("origin", swarm)], counters)
    pieces = [swarm.data[i : i + PIECE] for i in range(0, len(swarm.data), PIECE)]
    return CachedFileSource(
        chain,
        node,
        FileRecord("x.safetensors", len(swarm.data), "k"),
        piece_size=PIECE,
        digests=[hash_piece([p]) for p in pieces],
        published=True,
        counters=counters,
    )


def test_a_read_through_the_cache_waits_once_for_all_its_missing_pieces(
    tmp_path: Path,
) -> None:
    """One long poll of the agent per read, not one per piece (a 2 MiB read of 128 KiB
    pieces asked up to 16 times, and the polls cost the node's CPU)."""
    node = NodeCache(
        CacheConfig(disk_dir=tmp_path / "disk", ram_dir=tmp_path / "ram", piece_size=PIECE)
    )
    data = b"".join(bytes([i]) * PIECE for i in range(6))
    pieces = [data[i : i + PIECE] for i in range(0, len(data), PIECE)]
    node.store(hash_piece([pieces[1]]), [memoryview(pieces[1])])  # one already on the node
    counters = SourceCounters()
    swarm = AgentLikeSource(data, node)
    source = through_agent(node, swarm, counters)
    out = bytearray(5 * PIECE)
    source.read_into(0, [memoryview(out)])
    assert bytes(out) == data[: 5 * PIECE]
    assert swarm.waits == [(0, 5 * PIECE)], "pieces 0-4 in one wait (1 was held: inside)"
    source.read_into(0, [memoryview(out)])
    assert len(swarm.waits) == 1, "every piece is in the cache now: no wait at all"
    assert counters.bytes_by_source()["peers"] == 4 * PIECE


def test_a_piece_the_agent_stored_is_not_stored_again_by_the_reader(tmp_path: Path) -> None:
    """The agent's disk tier links to its seed file; a reader in another process saw
    that link only once it re-read the link tables (at most every 50 ms), and until then
    wrote a second, fsynced copy of each piece it read: 40 of 192 pieces in one load."""
    config = CacheConfig(disk_dir=tmp_path / "disk", ram_dir=tmp_path / "ram", piece_size=PIECE)
    reader, agent_side = NodeCache(config), NodeCache(config)  # two processes' views
    data = b"".join(bytes([i]) * PIECE for i in range(4))
    pieces = [data[i : i + PIECE] for i in range(0, len(data), PIECE)]
    counters = SourceCounters()
    swarm = AgentLikeSource(data, agent_side, seed=tmp_path / "seed.bin")
    source = through_agent(reader, swarm, counters)
    for index, piece in enumerate(pieces):  # one piece per read: each waits on its own
        out = bytearray(PIECE)
        source.read_into(index * PIECE, [memoryview(out)])
        assert bytes(out) == piece
    disk = next(tier for tier in reader.tiers if tier.name == "disk")
    assert [p.sha for p in disk.scan() if p.size >= PIECE] == [], "no second copy on disk"
    assert counters.bytes_by_source()["peers"] == len(data)
    assert all(reader.find(hash_piece([p])) is not None for p in pieces)
