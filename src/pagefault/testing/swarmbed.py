"""A whole fleet on one machine: Redis, a coordinator, an origin and N agents, each in its own
network namespace with a shaped link (:mod:`pagefault.testing.netns`). Used by the swarm tests
and ``bench/swarm_bench.py``.

The root namespace never talks to the test subnet, so measurements are driven from inside:
``python -m pagefault.testing.swarmbed drive`` runs on the control host, asks every agent
for the model at once and reports each node's timings and byte counts as JSON.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import pagefault
from pagefault.errors import ControlError, PagefaultError
from pagefault.swarm.client import AgentClient
from pagefault.swarm.jsonhttp import call
from pagefault.swarm.simulate import slow_positions
from pagefault.swarm.topology import DEFAULT_STRIPES
from pagefault.testing.agentd import process_cpu_s
from pagefault.testing.http_origin import STATS_PATH
from pagefault.testing.netns import DEFAULT_QUEUEING, Host, Testbed
from pagefault.testing.redisd import redis_argv

__all__ = ["FleetConfig", "SwarmTestbed", "holds_model", "load_and_digest"]

API_PORT, PEER_PORT, COORDINATOR_PORT, ORIGIN_PORT, REDIS_PORT = 7070, 6881, 7171, 8080, 6379
# what "requests-first" links serve first: everything sent to a service is a request or an ACK
SERVICE_PORTS = (API_PORT, PEER_PORT, COORDINATOR_PORT, ORIGIN_PORT, REDIS_PORT)
TOKEN = "testbed-token"


@dataclass(frozen=True)
class FleetConfig:
    nodes: int
    node_mbit: float = 100.0
    origin_mbit: float = 200.0
    stall_s: float = 10.0
    coordinator: bool = True
    stripes: int = DEFAULT_STRIPES  # 1: chain, 2: two interleaved trees
    slow_fraction: float = 0.0  # this share of the nodes (spread, simulate.slow_positions)
    slow_mbit: float = 10.0  # ... has links this fast
    declare_links: bool = True  # every agent declares its rate (--link-mbit)
    prefix: str = "pfsw"
    queueing: str = DEFAULT_QUEUEING  # how shaped links queue packets (netns.QUEUEINGS)
    logs_dir: Path | None = None  # keep every process's log here (the work dir goes at close)
    redis_args: tuple[str, ...] = ()  # extra redis-server options (e.g. one that refuses us)


class SwarmTestbed:
    """Build the fleet in ``__enter__``; everything (processes, namespaces) goes in ``__exit__``."""

    def __init__(self, config: FleetConfig, model_dir: Path) -> None:
        self.config = config
        self.model_dir = model_dir
        self.bed = Testbed(prefix=config.prefix)
        self.work = Path(tempfile.mkdtemp(prefix="pagefault-swarmbed-"))
        # each node's RAM tier, on tmpfs where there is one (as /dev/shm/pagefault would be)
        shm = Path("/dev/shm")
        self.ram_root = (shm if shm.is_dir() else self.work) / f"{self.work.name}-ram"
        self.nodes: list[Host] = []
        self.agents: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> SwarmTestbed:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.bed.close()
        if self.config.logs_dir is not None:
            self.config.logs_dir.mkdir(parents=True, exist_ok=True)
            for log in self.work.glob("*.log"):
                shutil.copy2(log, self.config.logs_dir / log.name)
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.ram_root, ignore_errors=True)

    @property
    def origin_url(self) -> str:
        return f"http://{self.origin.address}:{ORIGIN_PORT}/"

    @property
    def coordinator_url(self) -> str:
        return f"http://{self.ctl.address}:{COORDINATOR_PORT}"

    def _build(self) -> None:
        self.ctl = self.bed.add_host("ctl")
        shape = functools.partial(
            self.bed.add_host, queueing=self.config.queueing, first_ports=SERVICE_PORTS
        )
        self.origin = shape("origin", rate_mbit=self.config.origin_mbit)
        slow = slow_positions(self.config.nodes, self.config.slow_fraction)
        self.nodes = [
            shape(f"n{i}", rate_mbit=self.config.slow_mbit if i in slow else self.config.node_mbit)
            for i in range(1, self.config.nodes + 1)
        ]
        self._spawn(
            self.origin,
            "origin",
            [
                *_PY,
                "pagefault.testing.http_origin",
                str(self.model_dir),
                "--host",
                self.origin.address,
                "--port",
                str(ORIGIN_PORT),
            ],
        )
        self.start_redis()
        if self.config.coordinator:
            self._spawn(
                self.ctl,
                "coordinator",
                [
                    *_PY,
                    "pagefault",
                    "coordinator",
                    "--listen",
                    f"{self.ctl.address}:{COORDINATOR_PORT}",
                    "--redis",
                    f"redis://127.0.0.1:{REDIS_PORT}/0",
                    "--ca-dir",
                    str(self.work / "ca"),
                    "--token",
                    TOKEN,
                    "--stripes",
                    str(self.config.stripes),
                ],
            )
        for node in self.nodes:
            self.start_agent(node)
        self._await_fleet()

    def start_redis(self) -> None:
        argv = [*redis_argv(REDIS_PORT), *self.config.redis_args]
        self.redis = self._spawn(self.ctl, "redis", argv)

    def start_agent(self, node: Host) -> None:
        argv = [
            *_PY,
            "pagefault",
            "agent",
            "--node",
            node.name,
            "--listen",
            f"{node.address}:{PEER_PORT}",
            "--api",
            f"{node.address}:{API_PORT}",
            "--data-dir",
            str(self.work / node.name / "seed"),
            "--stall",
            str(self.config.stall_s),
            "--coordinator",
            self.coordinator_url,
            "--token",
            TOKEN,
            "--link-mbit",
            str(node.rate_mbit or 0) if self.config.declare_links else "0",
        ]
        self.agents[node.name] = self._spawn(
            node, f"agent-{node.name}", argv, env=self.cache_env(node)
        )

    def cache_env(self, node: Host) -> dict[str, str]:
        """The node cache of ``node``: its agent and its loaders share it (RAM tier included)."""
        return {
            "PAGEFAULT_CACHE_DIR": str(self.work / node.name / "cache"),
            "PAGEFAULT_CACHE_RAM_DIR": str(self.ram_root / node.name),
            "PAGEFAULT_CACHE_DISK_CAPACITY": "4GiB",
            "PAGEFAULT_CACHE_RAM_CAPACITY": "4GiB",
        }

    def kill_agent(self, node: Host) -> None:
        self.agents[node.name].kill()
        self.agents[node.name].wait()

    def drive(self, nodes: list[Host] | None = None, *, timeout: float = 300) -> dict[str, Any]:
        """Every listed node asks its agent for the model at the same moment; wait for all."""
        agents = self._agents_arg(nodes or self.nodes)
        done = self.ctl.run(
            [
                *_PY,
                "pagefault.testing.swarmbed",
                "drive",
                "--uri",
                self.origin_url,
                "--agents",
                agents,
                "--timeout",
                str(timeout),
                "--origin-stats",
                f"http://{self.origin.address}:{ORIGIN_PORT}{STATS_PATH}",
            ],
            capture_output=True,
            timeout=timeout + 60,
        )
        if done.returncode:
            raise PagefaultError(f"swarm drive failed: {done.stderr.decode()[-2000:]}")
        return dict(json.loads(done.stdout))

    def timelines(self) -> dict[str, dict[str, Any]]:
        """Per live agent, when each piece of the model was verified there (a ``Timeline``
        as JSON): the raw material of ``swarm_bench.py --timeline``."""
        agents = self._agents_arg(self.nodes)
        argv = [*_PY, "pagefault.testing.swarmbed", "timelines", "--uri", self.origin_url]
        done = self.ctl.run([*argv, "--agents", agents], capture_output=True, timeout=60)
        if done.returncode:
            raise PagefaultError(f"reading timelines failed: {done.stderr.decode()[-2000:]}")
        return dict(json.loads(done.stdout))

    @staticmethod
    def _agents_arg(nodes: list[Host]) -> str:
        """``name=url,...`` of ``nodes``' agent APIs, as the control-host commands take it."""
        return ",".join(f"{n.name}=http://{n.address}:{API_PORT}" for n in nodes)

    def load_all(
        self, nodes: list[Host] | None = None, *, timeout: float = 300, agent: bool = True
    ) -> dict[str, Any]:
        """Every listed node runs ``pagefault.stream(uri)`` through its own agent (none with
        ``agent=False``) and node cache at the same moment; each reports timings, bytes by
        source and a digest."""
        targets = nodes or self.nodes
        before = self.origin_bytes()
        children = {}
        for node in targets:
            out = self.work / f"load-{node.name}.json"
            ready = self.work / f"load-{node.name}.ready"
            ready.unlink(missing_ok=True)
            argv = [*_PY, "pagefault.testing.swarmbed", "load", "--uri", self.origin_url]
            argv += ["--ready", str(ready), "--out", str(out)]
            url = f"http://{node.address}:{API_PORT}" if agent else "off"
            env = {**self.cache_env(node), "PAGEFAULT_AGENT": url}
            child = self._spawn(node, f"load-{node.name}", argv, env=env, stdin=subprocess.PIPE)
            children[node.name] = (child, out, ready)
        # Every loader imports torch first (1-3 s of CPU each; 16 share 2 CPUs here, where
        # each would have its own node), then all start at one moment, told once all are
        # ready: the fleet's time is the swarm's, not the imports'.
        deadline = time.monotonic() + timeout
        for name, (child, _, ready) in children.items():
            while not ready.exists():
                if child.poll() is not None or time.monotonic() > deadline:
                    raise PagefaultError(f"load on {name} never got ready: {self._tail(name)}")
                time.sleep(0.05)
        start = f"{time.time() + _GO_AHEAD_S}\n".encode()
        for child, _, _ in children.values():
            assert child.stdin is not None  # spawned with a pipe
            child.stdin.write(start)
            child.stdin.close()
        results: dict[str, Any] = {}
        for name, (child, out, _) in children.items():
            if child.wait(timeout=max(1.0, deadline - time.monotonic())):
                raise PagefaultError(f"load on {name} failed: {self._tail(name)}")
            results[name] = json.loads(out.read_text())
        return {"origin_bytes": self.origin_bytes() - before, "nodes": results}

    def origin_bytes(self) -> int:
        """Bytes the origin has sent so far (all nodes, all models)."""
        url = f"http://{self.origin.address}:{ORIGIN_PORT}{STATS_PATH}"
        done = self.ctl.run(
            [*_PY, "pagefault.testing.swarmbed", "stats", "--url", url],
            capture_output=True,
            timeout=30,
        )
        return int(json.loads(done.stdout)["bytes_sent"])

    def pieces_held(self) -> dict[str, int]:
        """How many pieces each live agent holds (all its models together), for tests that
        must act mid-transfer: they wait on this, not on the clock."""
        urls = [f"http://{n.address}:{API_PORT}/v1/models" for n in self.nodes]
        done = self.ctl.run([sys.executable, "-c", _HELD, *urls], capture_output=True, timeout=30)
        held = json.loads(done.stdout)
        return {n.name: count for n, count in zip(self.nodes, held, strict=True) if count >= 0}

    def agent_cpu_s(self) -> dict[str, float]:
        """CPU seconds (user + system) each live agent has used so far, from /proc."""
        used = {}
        for name, process in self.agents.items():
            try:
                used[name] = process_cpu_s(process.pid)
            except OSError:
                continue  # killed by the test
        return used

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")

    def _tail(self, node: str) -> str:
        return self.log(f"load-{node}")[-2000:]

    def _spawn(
        self,
        host: Host,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        stdin: int | None = None,
    ) -> subprocess.Popen[bytes]:
        with open(self.work / f"{name}.log", "ab") as log:  # the child keeps its own copy
            return host.spawn(argv, stdin=stdin, stdout=log, stderr=subprocess.STDOUT, env=env)

    def _await_fleet(self, timeout: float = 120) -> None:
        """One probe on the control host waits for every agent's API (not a process per poll)."""
        urls = [f"http://{n.address}:{API_PORT}/v1/models" for n in self.nodes]
        argv = [sys.executable, "-c", _PROBE, str(timeout), *urls]
        done = self.ctl.run(argv, capture_output=True, timeout=timeout + 30)
        if done.returncode:
            detail = done.stderr.decode(errors="replace")[-500:]
            raise PagefaultError(f"the fleet did not come up: {detail}; logs in {self.work}")


_PROBE = """
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
for url in sys.argv[2:]:
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"timed out waiting for {url}")
            time.sleep(0.2)
"""
_HELD = """
import json, sys, urllib.request
held = []
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            held.append(sum(m["have"] for m in json.load(answer)["models"]))
    except OSError:
        held.append(-1)  # a killed agent
print(json.dumps(held))
"""
_PY = [sys.executable, "-m"]
_GO_AHEAD_S = 0.2  # from telling the loaders the start to the start: enough to read a pipe


def _drive(uri: str, agents: dict[str, str], timeout: float, origin_stats: str) -> dict[str, Any]:
    before = call(origin_stats)["bytes_sent"]
    results: dict[str, Any] = {}
    began = time.monotonic()

    def one(name: str, url: str) -> None:
        client = AgentClient(url)
        try:
            model = client.open(uri)
            # The feed to its end, then "complete" at once: describing every agent 20
            # times a second took ~0.65 of this 2-CPU host's CPUs at N=16 (2 ms each).
            with suppress(ControlError):  # a failed job: its description says why
                for line in client.feed(model.id):
                    if line.complete or time.monotonic() - began > timeout:
                        break
            for update in client.follow(model, interval=0.01):
                model = update
                if time.monotonic() - began > timeout:
                    raise PagefaultError("timed out")
            results[name] = model.model_dump() | {"wall_s": time.monotonic() - began}
        except PagefaultError as exc:
            results[name] = {"state": "failed", "error": str(exc)}

    threads = [threading.Thread(target=one, args=item) for item in agents.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"origin_bytes": call(origin_stats)["bytes_sent"] - before, "nodes": results}


def _timelines(uri: str, agents: dict[str, str]) -> dict[str, Any]:
    """Each agent's timeline of ``uri``, as JSON; an agent that is down has none."""
    timelines = {}
    for name, url in agents.items():
        client = AgentClient(url)
        with suppress(ControlError):  # a killed agent has none
            timelines[name] = client.timeline(client.open(uri).id).model_dump()
    return timelines


def holds_model(model_dir: Path, node: dict[str, Any]) -> bool:
    """A driven node (one entry of ``SwarmTestbed.drive``'s ``nodes``) finished, and every
    file its agent holds is byte-identical to the model's."""
    return node.get("state") == "complete" and all(
        Path(f["path"]).read_bytes() == (model_dir / f["name"]).read_bytes() for f in node["files"]
    )


def load_and_digest(uri: str, start: float) -> dict[str, Any]:
    """One node's ``pagefault.stream(uri)``, begun at ``start`` (epoch seconds, the fleet's
    common moment): seconds to the first tensor and to the last, bytes by source, and a
    digest of every tensor. ``late_s``: how far past ``start`` this process began;
    ``cpu_s``: this process's CPU seconds from ``start`` on (the load and the digest)."""
    late_s = max(0.0, time.time() - start)
    time.sleep(max(0.0, start - time.time()))
    began = resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256()
    first_s = None
    stream = pagefault.stream(uri)
    opened_s = time.time() - start
    for name, tensor in stream:
        if first_s is None:
            first_s = time.time() - start
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    ended = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "started_at": start,
        "opened_s": opened_s,  # the model described, its headers read
        "first_tensor_s": first_s,
        "wall_s": time.time() - start,
        "late_s": late_s,
        "cpu_s": ended.ru_utime + ended.ru_stime - began.ru_utime - began.ru_stime,
        "load_s": stream.stats.seconds,
        "gbps": stream.stats.gbps,
        "bytes": stream.stats.bytes,
        "bytes_by_source": stream.stats.bytes_by_source,
        "corrupt_pieces": stream.stats.corrupt_pieces,
        "digest": digest.hexdigest(),
    }


# What a process's first ``pagefault.stream(uri)`` imports (pydantic, obstore, the cache,
# the pipeline: ~0.2 s of CPU). Each loader imports it before it says it is ready: 16 of
# them importing at the start shared the testbed's 2 CPUs and held every agent's first
# request back 0.2-0.3 s, where each node would import on CPUs of its own.
_LOAD_PATH = (
    "pagefault.api.chain",
    "pagefault.api.loading",
    "pagefault.pipeline.loader",
    "pagefault.pipeline.stream",
    "pagefault.cache.source",
    "pagefault.doctor.bottleneck",
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m pagefault.testing.swarmbed")
    parser.add_argument("command", choices=["drive", "load", "stats", "timelines"])
    parser.add_argument("--uri")
    parser.add_argument("--agents", help="name=url,...")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--origin-stats")
    parser.add_argument(
        "--ready", help="load: create this file once imported, then read the start from stdin"
    )
    parser.add_argument("--out", help="load: where to write the JSON result")
    parser.add_argument("--url", help="stats: the origin's stats URL")
    args = parser.parse_args()
    if args.command == "stats":
        print(json.dumps(call(args.url)))
    elif args.command == "load":
        for module in _LOAD_PATH:  # as torch: before the start, not inside the fleet's time
            importlib.import_module(module)
        Path(args.ready).touch()
        start = float(sys.stdin.readline())  # the fleet's common moment, epoch seconds
        Path(args.out).write_text(json.dumps(load_and_digest(args.uri, start)))
        # Leave without the interpreter's teardown: with torch imported it takes ~0.35 s
        # of CPU, and the first nodes done spent it while the rest of the fleet was still
        # loading on the testbed's 2 CPUs (a serving process would stay up, idle).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    else:
        agents = dict(item.split("=", 1) for item in args.agents.split(","))
        if args.command == "timelines":
            print(json.dumps(_timelines(args.uri, agents)))
        else:
            print(json.dumps(_drive(args.uri, agents, args.timeout, args.origin_stats)))


if __name__ == "__main__":
    main()
