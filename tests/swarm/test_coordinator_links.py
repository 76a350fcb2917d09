"""Declared link rates travel through the coordinator (HTTP, Redis) into the placement."""

from __future__ import annotations

import shutil

import pytest
import redis

from pagefault.errors import ControlError
from pagefault.swarm.coordinator import Coordinator
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.jsonhttp import call
from pagefault.swarm.protocol import MEMBER_TTL_S
from pagefault.swarm.state import SwarmState
from pagefault.testing.redisd import LocalRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


def test_a_slow_node_is_fed_by_the_fast_trees_and_never_feeds_them() -> None:
    with LocalRedis() as store:
        client = redis.Redis.from_url(store.url, socket_timeout=1)
        server = (
            Coordinator(SwarmState(client, ttl_s=MEMBER_TTL_S), SwarmCA.create(), "secret")
            .server("127.0.0.1:0")
            .start()
        )

        def beat(node: str, link_mbit: object) -> dict[str, object]:
            body = {"address": f"10.0.0.{node[1:]}:6881", "link_mbit": link_mbit}
            url = f"http://{server.address}/v1/swarms/s/nodes/{node}"
            return dict(call(url, method="POST", body=body, token="secret"))

        try:
            for node in ("n1", "n2", "n3", "n4"):  # n2 declares a quarter of the others' rate
                beat(node, 10.0 if node == "n2" else 40.0)
            answers = {
                node: beat(node, 10.0 if node == "n2" else 40.0)
                for node in ("n1", "n2", "n3", "n4")
            }
            fed_by = {
                node: [up and up["node"] for up in answer["upstreams"]]  # type: ignore[union-attr]
                for node, answer in answers.items()
            }
            assert all("n2" not in feeders for feeders in fed_by.values())
            assert None not in fed_by["n2"]  # it reads no stripe from the origin
            with pytest.raises(ControlError) as bad:
                beat("n5", "fast")
            assert bad.value.status == 400 and "link_mbit" in str(bad.value)
        finally:
            server.stop()
            client.close()
