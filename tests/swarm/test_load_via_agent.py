"""``pagefault.load(uri)`` through the node agent: the swarm as a link of the source chain.

A real agent process on loopback (no coordinator: it fills the model from the origin
itself, as a fleet of one does), a real HTTP origin, and the node cache both share."""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import pagefault
from pagefault.cache import CacheConfig, NodeCache
from pagefault.errors import ControlError, SourceError, SwarmError
from pagefault.manifest import MANIFEST_NAME
from pagefault.swarm.client import AgentClient, AgentModel
from pagefault.swarm.config import configured_agent
from pagefault.swarm.jsonhttp import call
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing import FaultPlan, HTTPOrigin
from pagefault.testing.agentd import LocalAgent
from pagefault.testing.ports import free_port
from pagefault.testing.redisd import LocalRedis
from tests.polling import eventually

PIECE = 256 * 1024


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agent-origin")
    model = root / "model"
    write_synthetic_checkpoint(model, SyntheticConfig(size=6 << 20, shards=2, seed=5))
    manifest = pagefault.make_piece_manifest(model, piece_size=PIECE)
    pagefault.write_piece_manifest(manifest, str(model / MANIFEST_NAME))
    return root


def _cache_env(root: Path) -> dict[str, str]:
    return {
        "PAGEFAULT_CACHE_DIR": str(root / "disk"),
        "PAGEFAULT_CACHE_RAM_DIR": str(root / "ram"),
        "PAGEFAULT_CACHE_DISK_CAPACITY": "1GiB",
        "PAGEFAULT_CACHE_RAM_CAPACITY": "1GiB",
    }


class AgentProcess(LocalAgent):
    """``pagefault agent`` on loopback, sharing the test's node cache."""

    def __init__(self, cache_root: Path, log: Path, *extra: str) -> None:
        env = {**_cache_env(cache_root), "AWS_EC2_METADATA_DISABLED": "true"}
        super().__init__(env, log, "--stall", "2", *extra)


def swarm_fetch(
    uri: str, agent_url: str, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``pagefault swarm fetch`` as a user runs it (``extra``: more options)."""
    return subprocess.run(
        [sys.executable, "-m", "pagefault", "swarm", "fetch", uri, "--agent", agent_url, *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    for name, value in _cache_env(root).items():
        monkeypatch.setenv(name, value)
    return root


@pytest.fixture
def agent(
    cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AgentProcess]:
    process = AgentProcess(cache_root, tmp_path / "agent.log")
    monkeypatch.setenv("PAGEFAULT_AGENT", process.url)
    try:
        yield process
    finally:
        process.kill()


def _same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for name, tensor in want.items():
        assert torch.equal(got[name].view(torch.uint8), tensor.view(torch.uint8)), name


def test_load_reads_through_the_agent_then_from_the_node_cache(
    served: Path, agent: AgentProcess, cache_root: Path
) -> None:
    want = pagefault.load(served / "model")
    # 1 MB/s per connection: the agent's 4 origin readers need ~1.5 s, so the load streams
    with HTTPOrigin(served, bandwidth=1e6) as origin:
        uri = f"{origin.url}/model/"
        first = pagefault.stream(uri)
        _same(dict(first), want)
        by_source = first.stats.bytes_by_source
        assert by_source["origin"] == 0, "the agent fetched; this process read none itself"
        assert by_source["peers"] > 0  # streamed while the agent was still swarming
        assert by_source["peers"] + by_source["ram"] + by_source["disk"] >= first.stats.bytes
        size = sum(p.stat().st_size for p in (served / "model").glob("*.safetensors"))
        assert origin.bytes_sent <= 1.1 * size, "the node fetched the model about once"

        second = pagefault.stream(
            uri,
            cache=NodeCache(CacheConfig(disk_dir=cache_root / "disk", ram_dir=cache_root / "ram")),
        )
        _same(dict(second), want)
        assert second.stats.bytes_by_source["origin"] == 0
        assert second.stats.bytes_by_source["peers"] == 0
        assert second.stats.bytes_by_source["ram"] >= second.stats.bytes


def test_swarm_fetch_fills_the_node_cache_for_any_process(
    served: Path, agent: AgentProcess, cache_root: Path
) -> None:
    with HTTPOrigin(served) as origin:
        uri = f"{origin.url}/model/"
        fetched = swarm_fetch(uri, agent.url)
        assert fetched.returncode == 0, fetched.stderr
        assert "in the node cache" in fetched.stdout
        sent = origin.bytes_sent
        loaded = pagefault.stream(uri, cache=True)
        _same(dict(loaded), pagefault.load(served / "model"))
        assert loaded.stats.bytes_by_source["origin"] == 0
        assert loaded.stats.bytes_by_source["peers"] == 0
        assert origin.bytes_sent - sent < PIECE, "only HEADs: no model bytes from the origin"
    # one copy on disk: the agent's seed files; the disk tier holds links to them, one
    # table per seed file (not a file per piece)
    model_bytes = sum(f.stat().st_size for f in (served / "model").iterdir())
    tables = list((cache_root / "disk" / "links").iterdir())
    swarmed = [f for f in (served / "model").iterdir() if f.name != "pagefault.manifest.json"]
    assert len(tables) == len(swarmed)
    assert not [f for f in (cache_root / "disk" / "pieces").rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in tables) < model_bytes // 20


def test_a_model_changed_at_the_origin_is_not_read_from_the_agents_older_copy(
    served: Path, agent: AgentProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The agent holds (and a fleet may share the description of) the version it found; a
    loader that finds a newer one at the origin reads that, without trying the agent's
    bytes against the new digests first."""
    root = tmp_path / "origin"
    shutil.copytree(served, root)
    with HTTPOrigin(root) as origin:
        uri = f"{origin.url}/model/"
        assert swarm_fetch(uri, agent.url).returncode == 0
        for file in (root / "model").glob("*.safetensors"):  # new weights, the same sizes
            data = bytearray(file.read_bytes())
            data[-4096:] = bytes(b ^ 0xFF for b in data[-4096:])
            file.write_bytes(data)
        manifest = pagefault.make_piece_manifest(root / "model", piece_size=PIECE)
        pagefault.write_piece_manifest(manifest, str(root / "model" / MANIFEST_NAME))
        with caplog.at_level(logging.WARNING, logger="pagefault.sources"):
            loaded = pagefault.stream(uri, cache=True)
            _same(dict(loaded), pagefault.load(root / "model"))
    assert loaded.stats.bytes_by_source["peers"] == 0
    assert loaded.stats.corrupt_pieces == 0
    assert "a different version of the model" in caplog.text


def test_the_agent_says_when_each_piece_was_verified(served: Path, agent: AgentProcess) -> None:
    with HTTPOrigin(served) as origin:
        uri = f"{origin.url}/model/"
        asked = time.time()
        assert swarm_fetch(uri, agent.url).returncode == 0
        client = AgentClient(agent.url)
        model = client.open(uri)
        timeline = client.timeline(model.id)
    assert asked - 1 <= timeline.started_at <= time.time()
    assert len(timeline.verified_s) == model.pieces
    assert all(s is not None and 0 <= s <= time.time() - asked for s in timeline.verified_s)


def test_the_feed_names_every_piece_once_while_the_model_fills(
    served: Path, agent: AgentProcess
) -> None:
    """One request follows a whole load: each verified piece once, then a last line that
    says complete (the model fills while the feed is read: 0.2 s per origin read)."""
    with HTTPOrigin(served, faults=FaultPlan(first_byte_delay=0.2)) as origin:
        client = AgentClient(agent.url)
        model = client.open(f"{origin.url}/model/", timeout=30)
        feed = list(client.feed(model.id))
    pieces = [p for line in feed for p in line.pieces]
    assert sorted(pieces) == list(range(model.pieces or 0))  # each once
    assert len(feed) > 1  # more than one line: the pieces came while it was read
    assert feed[-1].complete and not any(line.complete for line in feed[:-1])
    assert all(line.error is None for line in feed)


def test_the_agent_exits_cleanly_on_sigterm_while_seeding(
    served: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    """Kubernetes stops a pod with SIGTERM: the agent must exit 0, not abort in libtorrent
    (it did, "terminate called without an active exception", status 134)."""
    with HTTPOrigin(served) as origin:
        fetched = swarm_fetch(f"{origin.url}/model/", agent.url)
        assert fetched.returncode == 0, fetched.stderr
    assert agent.terminate() == 0
    assert "terminate called" not in (tmp_path / "agent.log").read_text()


def test_a_restarted_agent_serves_the_pieces_it_already_holds(
    served: Path, cache_root: Path, tmp_path: Path
) -> None:
    """libtorrent finds a restarted agent's files complete when it checks them, and says
    no "piece finished" for them: the agent used to wait forever for pieces it had (a
    swarm fetch hung, falling back to the origin every stall without end)."""
    data = ("--data-dir", str(tmp_path / "data"))
    with HTTPOrigin(served) as origin:
        uri = f"{origin.url}/model/"
        first = AgentProcess(cache_root, tmp_path / "agent.log", *data)
        try:
            assert swarm_fetch(uri, first.url).returncode == 0
        finally:
            assert first.terminate() == 0
        sent = origin.bytes_sent
        again = AgentProcess(cache_root, tmp_path / "agent.log", *data)
        try:
            fetched = swarm_fetch(uri, again.url, timeout=30)  # it hung: TimeoutExpired
        finally:
            again.kill()
        assert fetched.returncode == 0, fetched.stderr
        assert origin.bytes_sent - sent < PIECE, "only the description: no model bytes again"


def test_a_load_gives_up_on_an_agent_that_verifies_nothing(
    served: Path, agent: AgentProcess
) -> None:
    """An agent that answers but gets no piece (here: its origin fails every read once
    the agent knows the layout) must not hold a load forever: the read fails over to the
    next link."""
    with HTTPOrigin(served, faults=FaultPlan(first_byte_delay=1.0)) as origin:
        model = AgentModel(agent.url, f"{origin.url}/model/", no_progress_s=1.0)
        model.start()
        origin.faults = FaultPlan(error_rate=1.0)  # reads in flight still land
        biggest = max(model.client.open(model.uri).files, key=lambda f: f.size)
        last = biggest.first_piece + biggest.pieces - 1  # its tail: not among those
        started = time.monotonic()
        with pytest.raises(SourceError, match="no piece verified on the node for 1 s"):
            model.wait(last, last)
        assert time.monotonic() - started < 10
        with pytest.raises(SourceError, match="no piece verified"):  # and at once after
            model.wait(0, 0)


def test_swarm_fetch_gives_up_after_its_timeout(served: Path, agent: AgentProcess) -> None:
    """Each origin read waits 0.5 s: the model needs ~4 s, the fetch may take 2.5."""
    with HTTPOrigin(served, faults=FaultPlan(first_byte_delay=0.5)) as origin:
        uri = f"{origin.url}/model/"
        started = time.monotonic()
        late = swarm_fetch(uri, agent.url, "--timeout", "2.5", "--json", timeout=60)
        assert late.returncode == 2  # the CLI's status for every error
        assert "after 2.5 s" in late.stdout + late.stderr
        assert time.monotonic() - started < 20


def test_agent_killed_mid_load_the_load_finishes_from_the_origin(
    served: Path, agent: AgentProcess, caplog: pytest.LogCaptureFixture
) -> None:
    want = pagefault.load(served / "model")
    # 2 MB/s per connection: the agent's 4 origin readers need ~1 s for 6 MiB
    with HTTPOrigin(served, bandwidth=2e6) as origin:
        uri = f"{origin.url}/model/"
        seen = 0

        def kill_at_a_third(nbytes: int) -> None:
            nonlocal seen
            seen += nbytes
            if seen >= 2 << 20 and agent.process.poll() is None:
                agent.kill()

        with caplog.at_level(logging.WARNING, logger="pagefault.sources"):
            stream = pagefault.stream(uri, threads=2, on_progress=kill_at_a_third)
            _same(dict(stream), want)
    assert agent.process.poll() is not None
    by_source = stream.stats.bytes_by_source
    assert by_source["origin"] > 0
    assert by_source["peers"] + by_source["ram"] + by_source["disk"] > 0
    assert "peers link failed" in caplog.text


def test_no_agent_answering_means_the_origin_with_a_warning(
    served: Path,
    cache_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PAGEFAULT_AGENT", f"http://127.0.0.1:{free_port()}")
    with HTTPOrigin(served) as origin, caplog.at_level(logging.WARNING):
        stream = pagefault.stream(f"{origin.url}/model/")
        _same(dict(stream), pagefault.load(served / "model"))
    assert stream.stats.bytes_by_source["peers"] == 0
    assert stream.stats.bytes_by_source["origin"] > 0
    assert "peers link failed" in caplog.text and "Connection refused" in caplog.text


def test_agent_setting_is_validated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert configured_agent({"PAGEFAULT_AGENT": "off"}) is None
    with pytest.raises(SwarmError, match="agent's API URL"):
        configured_agent({"PAGEFAULT_AGENT": "127.0.0.1:7070"})
    config = tmp_path / "config.toml"
    config.write_text('[swarm]\nagent = "http://127.0.0.1:7070"\n')
    assert configured_agent({"PAGEFAULT_CONFIG": str(config)}) == "http://127.0.0.1:7070"
    config.write_text('[swarm]\nagnet = "http://127.0.0.1:7070"\n')
    with pytest.raises(SwarmError, match="agnet"):
        configured_agent({"PAGEFAULT_CONFIG": str(config)})


@contextlib.contextmanager
def running_coordinator(tmp_path: Path, port: int) -> Iterator[str]:
    """A coordinator (token ``right``) on loopback ``port`` with its own Redis."""
    url = f"http://127.0.0.1:{port}"
    with LocalRedis() as store:
        argv = [sys.executable, "-m", "pagefault", "coordinator", "--listen", f"127.0.0.1:{port}"]
        argv += ["--redis", store.url, "--ca-dir", str(tmp_path / "ca"), "--token", "right"]
        with (tmp_path / "coordinator.log").open("ab") as log:
            server = subprocess.Popen(argv, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    call(f"{url}/v1/swarms", timeout=1, token="right")
                    break
                except ControlError:
                    assert server.poll() is None, (tmp_path / "coordinator.log").read_text()
                    assert time.monotonic() < deadline, "the coordinator never came up"
                    time.sleep(0.1)
            yield url
        finally:
            server.kill()
            server.wait()


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[str]:
    with running_coordinator(tmp_path, free_port()) as url:
        yield url


def _logged(log: Path, text: str, timeout: float = 10.0) -> bool:
    """Whether ``text`` shows up in ``log`` within ``timeout`` seconds (the agent logs
    from its own threads, so a line may come just after its API answers)."""
    if eventually(lambda: text in log.read_text(), timeout, 0.05):
        return True
    print(log.read_text())  # shown with the failed assertion
    return False


def test_an_agent_started_before_its_coordinator_joins_once_it_answers(
    served: Path, cache_root: Path, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "agent.log"
    url = f"http://127.0.0.1:{port}"
    agent = AgentProcess(cache_root, log, "--coordinator", url, "--token", "right")
    try:
        assert _logged(log, "no swarm membership yet (the coordinator is unreachable")
        with running_coordinator(tmp_path, port):
            # retries back off to one every 5 s
            assert _logged(log, "swarm membership: the coordinator answered", timeout=30)
            with HTTPOrigin(served) as origin:
                done = swarm_fetch(f"{origin.url}/model/", agent.url)
        assert done.returncode == 0, done.stderr
        assert "not in a swarm" not in done.stderr  # a member by its first model
        assert log.read_text().count("no swarm membership yet") == 1  # said once, not per retry
    finally:
        agent.kill()


def test_a_wrong_swarm_token_is_said_at_start_and_by_swarm_fetch(
    served: Path, cache_root: Path, coordinator: str, tmp_path: Path
) -> None:
    log = tmp_path / "agent.log"
    agent = AgentProcess(cache_root, log, "--coordinator", coordinator, "--token", "wrong")
    try:
        # said at start: the agent asks for its certificate as soon as its API is up
        assert _logged(log, "ERROR no swarm membership (the coordinator refused this node's")
        with HTTPOrigin(served) as origin:
            done = swarm_fetch(f"{origin.url}/model/", agent.url)
        assert done.returncode == 0, done.stderr
        assert "note: not in a swarm (the coordinator refused" in done.stderr
        assert "in the node cache" in done.stdout
    finally:
        agent.kill()
