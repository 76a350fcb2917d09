"""A throwaway Redis on a free loopback port, for tests that need the real server.

It can be killed and started again on the same port with its state gone, which is how
the coordinator's tests reproduce a Redis restart."""

from __future__ import annotations

import subprocess
import time

import redis

from pagefault.testing.ports import free_port

__all__ = ["LocalRedis", "redis_argv"]


def redis_argv(port: int, bind: str = "127.0.0.1") -> list[str]:
    """``redis-server`` on ``bind:port`` without persistence: a restart loses everything."""
    return ["redis-server", "--port", str(port), "--bind", bind, "--save", "", "--appendonly", "no"]


class LocalRedis:
    """``redis-server`` without persistence; ``kill`` + ``start`` is a restart that loses
    everything, as a Redis without a volume does in a fleet."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def start(self, timeout: float = 10) -> None:
        """Start the server and return once it answers PING."""
        self._process = subprocess.Popen(redis_argv(self.port), stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    why = f"redis-server did not start on port {self.port}"
                    raise RuntimeError(why) from None
                time.sleep(0.05)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown save, the state is gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
