"""The origin feeder: it fetches only what libtorrent lacks, once libtorrent has looked."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import libtorrent as lt
import pytest

from pagefault.api import make_piece_manifest
from pagefault.sources.base import Buffer
from pagefault.sources.local import LocalFileSource
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.feeder import OriginFeeder
from pagefault.swarm.striped import StripedTorrent
from pagefault.swarm.torrent import TORRENT_DIR
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from tests.polling import eventually
from tests.swarm.nodes import tls_node


class CountingSource(LocalFileSource):
    """The origin, counting its reads (all instances together)."""

    reads = 0

    def read_into(self, offset: int, buffers: Sequence[Buffer]) -> None:
        CountingSource.reads += 1
        super().read_into(offset, buffers)


def _feeding_node(
    tmp_path: Path, *, size: int, shards: int, threads: int, stop: threading.Event, held: bool
) -> tuple[OriginFeeder, StripedTorrent, lt.session]:
    """A node's torrent of a fresh model and its feeder, whose origin is the model's files
    (read through ``CountingSource``); ``held``: the node's files are complete already (what
    a first agent left). The session comes back too: the caller keeps it alive."""
    model = tmp_path / "model"
    entry = write_synthetic_checkpoint(model, SyntheticConfig(size, shards=shards))
    manifest = make_piece_manifest(entry, piece_size=256 << 10)
    node = "seed" if held else "node"
    if held:
        shutil.copytree(model, tmp_path / node / TORRENT_DIR)
    session, torrent = tls_node(SwarmCA.create(), manifest, tmp_path, node)
    feeder = OriginFeeder(
        torrent, manifest, lambda name: CountingSource(model / name), threads=threads, stop=stop
    )
    return feeder, torrent, session


def _wait_idle(feeder: OriginFeeder) -> None:
    assert eventually(lambda: not feeder.running, 60), "the feeder never finished"


def test_a_feeder_started_over_complete_files_fetches_nothing(tmp_path: Path) -> None:
    """An agent restarted over its data dir: libtorrent takes a while to check 48 MiB, and
    a feeder that did not wait for it fetched most of the model from the origin again."""
    feeder, torrent, _session = _feeding_node(  # the session kept alive
        tmp_path, size=48 << 20, shards=2, threads=4, stop=threading.Event(), held=True
    )
    CountingSource.reads = 0
    assert feeder.start("a restart")
    _wait_idle(feeder)
    assert CountingSource.reads == 0
    assert torrent.held_pieces() == list(range(torrent.layout.num_pieces))
    feeder.close()


def test_each_reason_to_read_the_origin_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feeder, _torrent, _session = _feeding_node(  # the session kept alive
        tmp_path, size=1 << 20, shards=1, threads=2, stop=threading.Event(), held=False
    )
    with caplog.at_level("INFO", logger="pagefault.agent"):
        for reason in ("designated fetcher", "designated fetcher", "swarm stalled"):
            assert feeder.start(reason, wanted=lambda piece: False)  # a pass with nothing to read
            _wait_idle(feeder)
    said = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert said == [
        "fetching from the origin: designated fetcher",
        "fetching from the origin: swarm stalled",
    ]
    feeder.close()


def test_a_stopped_job_reads_nothing_more_from_the_origin(tmp_path: Path) -> None:
    """An agent shutting down mid-fetch: its passes end at once, without reading (they
    used to read on, then log the pool's refusal at interpreter exit as a failed fetch)."""
    stop = threading.Event()
    feeder, _torrent, _session = _feeding_node(  # the session kept alive
        tmp_path, size=1 << 20, shards=1, threads=2, stop=stop, held=False
    )
    stop.set()
    CountingSource.reads = 0
    assert feeder.start("designated fetcher")
    _wait_idle(feeder)
    assert CountingSource.reads == 0 and feeder.bytes == 0
    feeder.close()
