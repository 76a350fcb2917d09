"""Fixtures shared by the swarm's tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import redis

from pagefault.swarm.coordinator import Coordinator
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.protocol import MEMBER_TTL_S
from pagefault.swarm.state import SwarmState
from pagefault.testing.redisd import LocalRedis

TOKEN = "secret"  # the swarm token of the `coordinator` fixture


@pytest.fixture
def coordinator() -> Iterator[str]:
    """A real coordinator (over a Redis of its own) on loopback: its URL."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with LocalRedis() as store:
        client = redis.Redis.from_url(store.url, socket_timeout=1)
        state = SwarmState(client, ttl_s=MEMBER_TTL_S)
        server = Coordinator(state, SwarmCA.create(), TOKEN).server("127.0.0.1:0").start()
        try:
            yield f"http://{server.address}"
        finally:
            server.stop()
            client.close()
