"""The control planes' HTTP APIs: requests validated into messages, errors named, the token
checked; a real coordinator (with Redis) and a real agent on loopback."""

from __future__ import annotations

import base64
import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pagefault.api import make_piece_manifest, write_piece_manifest
from pagefault.cache import CacheConfig
from pagefault.errors import ControlError
from pagefault.manifest import MANIFEST_NAME
from pagefault.swarm.agent import Agent
from pagefault.swarm.client import AgentClient
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.jsonhttp import call
from pagefault.swarm.messages import FeedLine
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing import HTTPOrigin
from tests.polling import eventually


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    running = _started_agent("a1", tmp_path)
    assert running.api is not None
    try:
        yield f"http://{running.api.address}"
    finally:
        running.stop()


def _served_model(model_dir: Path, size: int, *, shards: int) -> Path:
    """A synthetic model with a 1 MiB piece manifest, for an origin to serve."""
    entry = write_synthetic_checkpoint(model_dir, SyntheticConfig(size, shards=shards))
    write_piece_manifest(make_piece_manifest(entry, piece_size=1 << 20), model_dir / MANIFEST_NAME)
    return model_dir


def _started_agent(node: str, data_dir: Path) -> Agent:
    config = AgentConfig(node=node, listen="127.0.0.1:0", api="127.0.0.1:0", data_dir=data_dir)
    return Agent(config, CacheConfig(enabled=False)).start()


def _refused(url: str, **kwargs: object) -> ControlError:
    with pytest.raises(ControlError) as refused:
        call(url, **kwargs)  # type: ignore[arg-type]
    return refused.value


def test_a_heartbeat_is_validated_field_by_field(coordinator: str) -> None:
    url = f"{coordinator}/v1/swarms/s/nodes/n1"
    missing = _refused(url, method="POST", body={"seq": 3}, token="secret")
    assert missing.status == 400 and "body.address" in str(missing)
    slow = _refused(
        url, method="POST", body={"address": "10.0.0.1:1", "link_mbit": -1}, token="secret"
    )
    assert slow.status == 400 and "body.link_mbit" in str(slow)
    bad_name = _refused(
        f"{coordinator}/v1/swarms/s/nodes/n%201", method="POST", body={}, token="secret"
    )
    assert bad_name.status == 400 and "path.node" in str(bad_name)
    beat = call(url, method="POST", body={"address": "10.0.0.1:6881"}, token="secret")
    assert beat["fetch"] == [0] and beat["upstreams"] == [None] and beat["size"] == 1


def test_every_route_but_health_needs_the_token(coordinator: str) -> None:
    assert _refused(f"{coordinator}/v1/swarms").status == 401
    assert _refused(f"{coordinator}/v1/swarms", token="wrong").status == 401
    assert call(f"{coordinator}/v1/health") == {"ok": True}
    assert call(f"{coordinator}/v1/swarms", token="secret") == {"swarms": []}
    assert _refused(f"{coordinator}/v1/nothing", token="secret").status == 404


def test_an_oversized_body_is_refused_before_it_is_read(coordinator: str) -> None:
    host, port = coordinator.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("PUT", "/v1/swarms/s/manifest")
    connection.putheader("Authorization", "Bearer secret")
    connection.putheader("Content-Length", str(1 << 30))
    connection.endheaders()  # and no body: the answer must not wait for one
    answer = connection.getresponse()
    assert answer.status == 413 and b"too large" in answer.read()
    connection.close()


def test_the_first_published_manifest_wins(coordinator: str) -> None:
    url = f"{coordinator}/v1/swarms/s/manifest"
    assert _refused(url, token="secret").status == 404
    assert call(url, method="PUT", body=b'{"first": 1}', token="secret") == {"published": True}
    assert call(url, method="PUT", body=b'{"second": 2}', token="secret") == {"published": False}
    stored = call(url, token="secret")["manifest"]
    assert base64.b64decode(stored) == b'{"first": 1}'


def test_the_agents_api_names_what_is_wrong(agent: str) -> None:
    assert call(f"{agent}/v1/models") == {"node": "a1", "models": []}
    no_uri = _refused(f"{agent}/v1/models", method="POST", body={})
    assert no_uri.status == 400 and "body.uri" in str(no_uri)
    assert _refused(f"{agent}/v1/models/{'0' * 24}").status == 404
    not_an_id = _refused(f"{agent}/v1/models/xyz")
    assert not_an_id.status == 400 and "path.model_id" in str(not_an_id)
    assert _refused(f"{agent}/v1/models/{'0' * 24}/feed").status == 404
    assert b"pagefault" in call(f"{agent}/metrics")  # Prometheus text, not JSON


def test_a_taken_address_is_a_clear_error(agent: str) -> None:
    taken = agent.removeprefix("http://")
    config = AgentConfig(node="a2", listen="127.0.0.1:0", api=taken, data_dir=Path("/tmp"))
    with pytest.raises(ControlError, match=f"cannot serve on {taken}"):
        Agent(config, CacheConfig(enabled=False)).start()


def test_stop_ends_the_alert_loop_before_the_process_may_exit(tmp_path: Path) -> None:
    """An interpreter exiting while a thread waits in libtorrent's wait_for_alert aborts
    the process (std::terminate, status 134): a SIGTERMed agent must not."""
    running = _started_agent("a3", tmp_path)
    running.stop()
    assert not running._alerts.is_alive()


def test_a_stopping_agent_ends_its_feeds_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A loader following a model when its agent shuts down hears why at once (not after a
    silent 30 s), and the shutdown cancels no open answer (that logged a traceback)."""
    _served_model(tmp_path / "srv" / "model", 16 << 20, shards=1)
    running = _started_agent("a4", tmp_path)
    assert running.api is not None
    client = AgentClient(f"http://{running.api.address}")
    lines: list[FeedLine] = []
    with HTTPOrigin(tmp_path / "srv", bandwidth=256 * 1024) as origin:  # 16 s for the model
        model = client.open(f"{origin.url}/model/", timeout=30)
        follower = threading.Thread(target=lambda: lines.extend(client.feed(model.id)))
        follower.start()
        eventually(lambda: running.jobs[model.id].ledger.total is not None, 10, 0.01)
        started = time.monotonic()
        running.stop()
        follower.join(timeout=30)
    assert time.monotonic() - started < 5
    assert lines and lines[-1].error == "the agent is shutting down"
    assert "Exception in ASGI application" not in caplog.text


def test_an_open_answers_with_the_layout_in_one_round_trip(tmp_path: Path) -> None:
    """The agent holds an open until the model's layout is known: a loader polled for it
    every 50 ms before, and its first answer had no files."""
    model_dir = _served_model(tmp_path / "srv" / "model", 4 << 20, shards=2)
    running = _started_agent("a5", tmp_path)
    assert running.api is not None
    try:
        with HTTPOrigin(tmp_path / "srv") as origin:
            uri = f"{origin.url}/model/"
            first = call(
                f"http://{running.api.address}/v1/models", method="POST", body={"uri": uri}
            )
            assert sorted(f["name"] for f in first["files"]) == sorted(
                p.name for p in model_dir.iterdir() if p.name != MANIFEST_NAME
            )
    finally:
        running.stop()
