"""The coordinator's health check answers for its store, without the swarm token, and
every route names the store's error when it fails."""

from __future__ import annotations

import shutil

import pytest
import redis

from pagefault.errors import ControlError
from pagefault.swarm.coordinator import Coordinator
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.jsonhttp import call
from pagefault.swarm.protocol import HEALTH_PATH, MEMBER_TTL_S
from pagefault.swarm.state import SwarmState
from pagefault.testing.redisd import LocalRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


def test_health_is_public_and_names_the_store_error() -> None:
    with LocalRedis() as store:
        client = redis.Redis.from_url(store.url, socket_timeout=1)
        state = SwarmState(client, ttl_s=MEMBER_TTL_S)
        server = Coordinator(state, SwarmCA.create(), "secret").server("127.0.0.1:0").start()
        base = f"http://{server.address}"
        try:
            assert call(base + HEALTH_PATH) == {"ok": True}  # no token needed
            with pytest.raises(ControlError) as refused:
                call(base + "/v1/swarms")  # everything else still needs it
            assert refused.value.status == 401
            client.config_set("requirepass", "another")  # the store now refuses us
            client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
            for path, token in ((HEALTH_PATH, None), ("/v1/swarms", "secret")):
                with pytest.raises(ControlError) as down:
                    call(base + path, token=token)
                assert down.value.status == 503
                assert "coordination store unavailable" in str(down.value)
                assert "authenticat" in str(down.value).lower()
        finally:
            server.stop()
            client.close()
