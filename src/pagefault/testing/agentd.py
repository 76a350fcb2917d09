"""``pagefault agent`` on loopback in a process of its own, as a node runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pagefault.errors import ControlError
from pagefault.swarm.jsonhttp import call
from pagefault.testing.ports import free_port

__all__ = ["LocalAgent", "process_cpu_s"]


class LocalAgent:
    """An agent whose API is ``url``; ``env`` is added to this process's environment (its
    node cache, say) and ``extra`` to its command line. Returns once the API answers."""

    def __init__(
        self,
        env: Mapping[str, str],
        log: Path,
        *extra: str,
        node: str = "t1",
        timeout: float = 60.0,
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "pagefault", "agent", "--node", node]
        argv += ["--listen", "127.0.0.1:0", "--api", self.url.removeprefix("http://"), *extra]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:  # the agent imports its stack first: a few seconds before its API answers
            try:
                call(f"{self.url}/v1/models", timeout=1)
                return
            except ControlError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the agent exited:\n{log.read_text()[-4000:]}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the agent's API never came up ({log})") from None
                time.sleep(0.1)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """Stop it as a service manager does (SIGTERM); returns its exit status."""
        self.process.terminate()
        return self.process.wait(timeout=timeout)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads), from /proc;
    ``OSError`` once it is gone."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
