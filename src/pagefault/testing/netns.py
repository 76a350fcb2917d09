"""A multi-host testbed made of Linux network namespaces, for swarm tests and benchmarks.

Each host is a namespace ``<prefix>-<name>`` with one interface, ``eth0``, addressed
``<subnet>.<k>/24`` (k = 2, 3, ...). Its veth peer ``veth<k>`` sits in the hub namespace
``<prefix>-hub`` on the bridge ``br0``, so every host reaches every other host in one
hop, like machines on one switch. The root namespace gets no address on the subnet:
nothing a test does can leak onto the real network, and nothing outside can reach in.

A host built with ``rate_mbit`` gets a shaping qdisc on both veth ends: ``eth0`` caps
what the host sends (its upload), ``veth<k>`` caps what the hub delivers to it (its
download); each direction is shaped where its packets queue, with at most 50 ms queued.
``queueing`` chooses how packets wait for the link:

- ``"fifo"``: one token bucket (``tbf``), first in, first out. A lone ACK or request
  waits behind up to 50 ms of another flow's data.
- ``"small-first"``: an ``htb`` bucket with two classes; packets under 256 bytes (ACKs,
  BitTorrent requests and HAVEs) go ahead of bulk data. It stands in for what a real
  host's queue does, fq_codel (the default of mainstream distributions) serving sparse
  flows first, which the kernel this was built on lacks (no fq, fq_codel, sfq or prio;
  htb and u32 only). Its flaw: a bulk flow's own small segments (a TLS record holding a
  HAVE) overtake the data sent before them, so the receiver sees reordering that
  fq_codel, which keeps a flow in order, never causes; forwarding hops ran 8-15% below
  the cap on it.
- ``"requests-first"`` (what :class:`Testbed` does unless told): the same two classes,
  but a packet goes first when it is sent *to* one of ``first_ports`` (the services:
  peers' listen port, the origin, the coordinator), whatever its size. Requests and the
  ACKs of downloads skip the queue; data, which flows from a service to the host that
  dialed it, queues in order. Exact where every connection's data flows from the side
  that listens, as in pagefault's swarm (a node dials its upstream); a flow that sent
  bulk data *to* a service port would jump the queue.

Either way the cap holds for the sum of a host's flows, but bulk flows share one FIFO,
so concurrent flows through one capped link share it unevenly: do not assert per-flow
fairness.

Needs root and iproute2 (``ip``, ``tc``); :func:`available` says why not when it can't run.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

from pagefault.errors import PagefaultError

__all__ = [
    "DEFAULT_QUEUEING",
    "QUEUEINGS",
    "Host",
    "Testbed",
    "TestbedError",
    "available",
    "cleanup_stale",
]

_TERM_GRACE_S = 3.0  # how long spawned processes get to exit on SIGTERM before SIGKILL
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_FIRST_HOST_OCTET = 2  # .1 stays free, as a gateway address would be on a real LAN
_LAST_HOST_OCTET = 254
_QUEUE_S = 0.05  # longest a packet may queue at a shaped link: bounds the added delay
_SMALL_PACKET = 256  # IP packets shorter than this skip the bulk queue under "small-first"
# A veth hands htb GSO packets of up to 64 KiB, which htb does not split (tbf does): a
# queue shorter than two of them drops every full one. At 10 Mbit/s, 50 ms of queue is
# 62.5 KB, and one node took 44.6 s for a 10.5 s transfer.
_MIN_QUEUE_BYTES = 2 * 65536
QUEUEINGS = ("small-first", "requests-first", "fifo")
DEFAULT_QUEUEING = "requests-first"

_Stream = int | IO[Any] | None


class TestbedError(PagefaultError):
    """A testbed command failed; the message holds the command and its stderr."""

    __test__ = False  # not a pytest test class, despite the name


def _sh(command: str) -> str:
    """Run an ``ip``/``tc`` command line and return its stdout; raise with its stderr.

    Split on whitespace: every name in it is validated to contain none."""
    argv = command.split()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise TestbedError(f"`{command}` could not start: {exc}") from exc
    if done.returncode != 0:
        raise TestbedError(f"`{command}` failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _delete_namespace(namespace: str) -> None:
    """SIGKILL whatever still runs in ``namespace``, then delete it.

    ``ip netns del`` only drops the name: a namespace (and its veth) lives on while any
    process is inside, including daemons that left our process groups.
    """
    for pid in _sh(f"ip netns pids {namespace}").split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    _sh(f"ip netns del {namespace}")


def _tbf_burst_bytes(rate_mbit: float) -> int:
    """Bucket size: 10 ms of tokens, so timer slack never leaves the link idle, and at
    least two full Ethernet frames. No bigger: the bucket starts full and its first
    ``burst`` bytes leave at line rate, which would inflate short transfers at low rates
    (a 64 KiB floor measured 1.27x the cap for 250 KB at 1 Mbit/s). Larger GSO packets
    are split by tbf itself."""
    return max(2 * 1514, int(rate_mbit * 1e6 / 8 / 100))


def _shape(
    namespace: str, device: str, rate_mbit: float, queueing: str, first_ports: Sequence[int]
) -> None:
    """Cap ``device``'s sending rate at ``rate_mbit`` with the ``queueing`` discipline."""
    tc, burst = f"tc -n {namespace}", _tbf_burst_bytes(rate_mbit)
    queue_bytes = max(_MIN_QUEUE_BYTES, int(rate_mbit * 1e6 / 8 * _QUEUE_S))
    if queueing == "fifo":
        _sh(
            f"{tc} qdisc add dev {device} root tbf rate {rate_mbit}mbit burst {burst}"
            f" latency {_QUEUE_S * 1000:g}ms"
        )
        return
    # htb: a parent at the cap, two children that may each borrow all of it; the first
    # class (prio 0) is served first whenever both have packets waiting.
    buckets = f"burst {burst} cburst {burst}"
    _sh(f"{tc} qdisc add dev {device} root handle 1: htb default 20")
    _sh(f"{tc} class add dev {device} parent 1: classid 1:1 htb rate {rate_mbit}mbit {buckets}")
    for leaf, share, prio in ((10, 0.1, 0), (20, 0.9, 1)):
        _sh(
            f"{tc} class add dev {device} parent 1:1 classid 1:{leaf} htb"
            f" rate {rate_mbit * share:g}mbit ceil {rate_mbit}mbit {buckets} prio {prio}"
        )
        _sh(f"{tc} qdisc add dev {device} parent 1:{leaf} handle {leaf}: bfifo limit {queue_bytes}")
    first = f"{tc} filter add dev {device} parent 1: protocol ip prio 1 u32"
    if queueing == "requests-first":
        for port in first_ports:  # u32's "ip dport": the TCP/UDP port after a 20-byte header
            _sh(f"{first} match ip dport {port} 0xffff flowid 1:10")
        return
    # u32 at offset 2 of the IP header: the total length, below _SMALL_PACKET
    mask = 0xFFFF & ~(_SMALL_PACKET - 1)
    _sh(f"{first} match u16 0x0000 {mask:#06x} at 2 flowid 1:10")


@dataclass
class Host:
    """One machine of the testbed: a namespace with ``eth0`` at ``address``."""

    name: str
    namespace: str
    address: str
    rate_mbit: float | None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: _Stream = None,
        stdout: _Stream = None,
        stderr: _Stream = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside this host, in a new session so that the testbed can kill
        its whole process group on close. ``env`` is added to the current environment."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *argv],
            env=None if env is None else {**os.environ, **env},
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self.processes.append(proc)
        return proc

    def run(
        self, argv: Sequence[str], *, check: bool = False, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` of ``argv`` inside this host (keyword arguments pass through).

        Not tracked: it has finished by the time it returns."""
        return subprocess.run(["ip", "netns", "exec", self.namespace, *argv], check=check, **kwargs)


class Testbed:
    """Hosts on one switched /24, each in its own network namespace; a context manager.

    Everything it creates is removed by :meth:`close` (also run on ``with`` exit and at
    interpreter exit), including after a setup that failed half-way: each namespace is
    recorded as soon as it exists.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, prefix: str = "pf", subnet: str = "10.77.0") -> None:
        if not _NAME.match(prefix):
            raise TestbedError(f"prefix {prefix!r} is not a valid namespace name")
        try:
            ipaddress.IPv4Network(f"{subnet}.0/24")
        except ValueError as exc:
            raise TestbedError(
                f"subnet {subnet!r} is not the first three octets of an IPv4 /24"
            ) from exc
        self.prefix = prefix
        self.subnet = subnet
        self.hub = f"{prefix}-hub"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []  # created by us, in creation order
        self._next_octet = _FIRST_HOST_OCTET
        self._closed = False
        atexit.register(self.close)

    def __enter__(self) -> Testbed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _add_namespace(self, namespace: str) -> None:
        """Create ``namespace`` with loopback up, and record it for :meth:`close`."""
        try:
            _sh(f"ip netns add {namespace}")
        except TestbedError as exc:
            raise TestbedError(
                f"{exc} (a crashed run's leftovers? cleanup_stale({self.prefix!r}) removes them)"
            ) from exc
        self._namespaces.append(namespace)
        _sh(f"ip -n {namespace} link set lo up")

    def add_host(
        self,
        name: str,
        *,
        rate_mbit: float | None = None,
        queueing: str = DEFAULT_QUEUEING,
        first_ports: Sequence[int] = (),
    ) -> Host:
        """Create host ``name`` on the hub bridge; ``rate_mbit`` caps its upload and its
        download separately (None: unshaped, as fast as the CPU moves packets), queueing
        packets for the link as ``queueing`` says (one of :data:`QUEUEINGS`);
        ``first_ports``: the service ports ``"requests-first"`` serves first."""
        if self._closed:
            raise TestbedError("the testbed is closed")
        if not _NAME.match(name) or name == "hub" or name in self.hosts:
            raise TestbedError(f"host name {name!r} is invalid, reserved or already taken")
        if rate_mbit is not None and rate_mbit <= 0:
            raise TestbedError(f"rate_mbit must be positive, not {rate_mbit}")
        if queueing not in QUEUEINGS:
            raise TestbedError(f"queueing must be one of {', '.join(QUEUEINGS)}, not {queueing!r}")
        if queueing == "requests-first" and rate_mbit is not None and not first_ports:
            raise TestbedError("requests-first queueing needs first_ports (the service ports)")
        if not all(0 < port < 65536 for port in first_ports):
            raise TestbedError(f"first_ports must be TCP ports, not {list(first_ports)}")
        if self._next_octet > _LAST_HOST_OCTET:
            raise TestbedError(f"subnet {self.subnet}.0/24 has no address left for {name!r}")
        if self.hub not in self._namespaces:
            self._add_namespace(self.hub)
            _sh(f"ip -n {self.hub} link add br0 type bridge")
            _sh(f"ip -n {self.hub} link set br0 up")

        octet = self._next_octet
        namespace, port = f"{self.prefix}-{name}", f"veth{octet}"
        self._add_namespace(namespace)
        self._next_octet += 1
        _sh(f"ip link add eth0 netns {namespace} type veth peer name {port} netns {self.hub}")
        _sh(f"ip -n {self.hub} link set {port} master br0 up")
        address = f"{self.subnet}.{octet}"
        _sh(f"ip -n {namespace} addr add {address}/24 dev eth0")
        _sh(f"ip -n {namespace} link set eth0 up")
        if rate_mbit is not None:
            _shape(namespace, "eth0", rate_mbit, queueing, first_ports)
            _shape(self.hub, port, rate_mbit, queueing, first_ports)
        host = Host(name, namespace, address, rate_mbit)
        self.hosts[name] = host
        return host

    def close(self) -> None:
        """Stop every spawned process (SIGTERM to its group, SIGKILL after a grace period)
        and delete every namespace created, killing anything left inside. Idempotent."""
        self._closed = True
        atexit.unregister(self.close)
        procs = [proc for host in self.hosts.values() for proc in host.processes]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + _TERM_GRACE_S
            for proc in procs:
                if proc.poll() is None:  # unreaped, so its pid (and group id) is still ours
                    os.killpg(proc.pid, sig)  # the group: children go with the leader
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for host in self.hosts.values():
            host.processes.clear()
        errors = []
        while self._namespaces:
            namespace = self._namespaces.pop()
            try:
                _delete_namespace(namespace)
            except TestbedError as exc:
                errors.append(str(exc))
        if errors:
            raise TestbedError("cleanup failed: " + "; ".join(errors))


def cleanup_stale(prefix: str = "pf") -> list[str]:
    """Delete the namespaces ``<prefix>-*`` a crashed run left behind; return their names.

    Also removes those of a live testbed with the same prefix: call it before, not during.
    """
    names = [line.split()[0] for line in _sh("ip netns list").splitlines() if line.strip()]
    stale = [name for name in names if name.startswith(f"{prefix}-")]
    for name in stale:
        _delete_namespace(name)
    return stale


@functools.cache
def available() -> str | None:
    """None when testbeds can be built here, else why not (a ``pytest.skip`` reason).

    Builds a throwaway namespace with a veth pair, a bridge and both kinds of shaping:
    containers often lack the privilege or one of those kernel modules.
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed"
    probe = f"pf-probe-{os.getpid()}"
    try:
        _sh(f"ip netns add {probe}")
        try:
            _sh(f"ip -n {probe} link add br0 type bridge")
            for k, queueing in enumerate(QUEUEINGS):
                _sh(f"ip -n {probe} link add v{k} type veth peer name w{k}")
                _shape(probe, f"v{k}", 1.0, queueing, first_ports=(7,))
        finally:
            _sh(f"ip netns del {probe}")
    except TestbedError as exc:
        return f"cannot build a namespace testbed: {exc}"
    return None
