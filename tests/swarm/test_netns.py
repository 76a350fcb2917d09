"""The namespace testbed: hosts reach each other, shaping holds the cap, cleanup is total."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pagefault.testing import netns
from pagefault.testing.netns import Host, Testbed, TestbedError, available, cleanup_stale

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))

PREFIX = f"pft{os.getpid()}"  # unique, so a concurrent run's namespaces are never touched

ECHO_SERVER = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", 7000))
print("ready", flush=True)
for _ in range(int(sys.argv[1])):
    conn, _ = srv.accept()
    with conn:
        conn.sendall(conn.recv(1024))
"""
ECHO_CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], 7000), timeout=5) as s:
    s.sendall(sys.argv[2].encode())
    print(s.recv(1024).decode())
"""
RECEIVER = r"""
import socket, time
srv = socket.create_server(("0.0.0.0", 7001))
print("ready", flush=True)
conn, _ = srv.accept()
start, n = time.perf_counter(), 0
while chunk := conn.recv(1 << 20):
    n += len(chunk)
print(n * 8 / (time.perf_counter() - start) / 1e6)
"""
SENDER = r"""
import socket, sys
with socket.create_connection((sys.argv[1], 7001)) as s:
    s.sendall(bytes(int(sys.argv[2])))
"""
ECHO_LINES = r"""
import socket
srv = socket.create_server(("0.0.0.0", 7002))
print("ready", flush=True)
conn, _ = srv.accept()
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while data := conn.recv(64):
    conn.sendall(data)
"""
# Round trips of 8-byte messages while a bulk upload through the same link is under way.
ROUND_TRIPS_UNDER_LOAD = r"""
import socket, statistics, sys, threading, time
peer = sys.argv[1]
flowing = threading.Event()
def bulk():
    with socket.create_connection((peer, 7001)) as s:
        for i in range(40):
            s.sendall(bytes(64 << 10))
            if i == 8:
                flowing.set()  # 576 KiB handed over: more than the link's 50 ms queue
threading.Thread(target=bulk, daemon=True).start()
flowing.wait(30)
with socket.create_connection((peer, 7002)) as s:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(15):
        began = time.perf_counter()
        s.sendall(b"12345678")
        s.recv(64)
        rtts.append(time.perf_counter() - began)
print(statistics.median(rtts) * 1000)
"""
# Bulk data with small, separately sent records in between (as a peer interleaves HAVEs),
# then what TCP on the sending side saw of the connection (ss prints reord_seen and
# dsack_dups only when non-zero).
MIXED_SENDER = r"""
import socket, subprocess, sys
with socket.create_connection((sys.argv[1], 7001)) as s:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(60):
        s.sendall(bytes(16 << 10))
        s.sendall(b"h" * 40)
    s.recv(1)  # the receiver has every byte; the connection is still open for ss to see
    print(subprocess.run(["ss", "-tin", "dport", "=", ":7001"], capture_output=True,
                         text=True).stdout)
"""
COUNTING_RECEIVER = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", 7001))
print("ready", flush=True)
conn, _ = srv.accept()
left = int(sys.argv[1])
while left > 0 and (chunk := conn.recv(1 << 20)):
    left -= len(chunk)
conn.sendall(b"k")
conn.recv(1)
"""
IGNORES_SIGTERM = r"""
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def ours() -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return sorted(line.split()[0] for line in listing.stdout.splitlines() if PREFIX in line)


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    assert ours() == []


def spawn_ready(host: Host, script: str, *args: str) -> subprocess.Popen[bytes]:
    """Start a Python script in ``host`` and wait until it says it is listening."""
    proc = host.spawn([sys.executable, "-c", script, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


def run_python(host: Host, script: str, *args: str) -> str:
    """Run a Python script in ``host`` to its end; its stdout."""
    done = host.run(
        [sys.executable, "-c", script, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return str(done.stdout)


def goodput_mbit(sender: Host, receiver: Host, nbytes: int) -> float:
    proc = spawn_ready(receiver, RECEIVER)
    run_python(sender, SENDER, receiver.address, str(nbytes))
    out, _ = proc.communicate(timeout=30)
    return float(out)


def test_every_host_reaches_every_other_and_the_root_namespace_stays_off_the_subnet() -> None:
    with Testbed(PREFIX, subnet="10.77.9") as bed:
        a, b, c = (bed.add_host(name) for name in "abc")
        assert [h.address for h in (a, b, c)] == ["10.77.9.2", "10.77.9.3", "10.77.9.4"]
        assert ours() == sorted(f"{PREFIX}-{n}" for n in ("a", "b", "c", "hub"))
        for server, clients in ((a, (b, c)), (c, (a, b))):
            proc = spawn_ready(server, ECHO_SERVER, str(len(clients)))
            for client in clients:
                echoed = run_python(client, ECHO_CLIENT, server.address, client.name)
                assert echoed.strip() == client.name
            proc.communicate(timeout=5)
        root = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
        assert "10.77.9." not in root.stdout


@pytest.mark.parametrize("queueing", netns.QUEUEINGS)
def test_a_shaped_host_moves_data_at_its_cap_both_ways(queueing: str) -> None:
    cap = 20.0
    with Testbed(PREFIX) as bed:
        shaped = bed.add_host("shaped", rate_mbit=cap, queueing=queueing, first_ports=(7002,))
        free = bed.add_host("free")
        upload = goodput_mbit(shaped, free, 5_000_000)
        download = goodput_mbit(free, shaped, 5_000_000)
    # Goodput is ~0.96 of the cap: tbf counts Ethernet, IP and TCP headers too.
    assert 0.6 * cap <= upload <= 1.15 * cap, upload
    assert 0.6 * cap <= download <= 1.15 * cap, download


@pytest.mark.parametrize(
    ("queueing", "slow"), [("fifo", True), ("small-first", False), ("requests-first", False)]
)
def test_small_packets_wait_behind_bulk_data_only_in_a_fifo(queueing: str, slow: bool) -> None:
    """The point of "small-first" and "requests-first": an ACK or request crossing a busy
    link is not held up by the 50 ms of another flow's data queued ahead of it."""
    with Testbed(PREFIX) as bed:
        shaped = bed.add_host("shaped", rate_mbit=10.0, queueing=queueing, first_ports=(7002,))
        free = bed.add_host("free")
        sink, echo = spawn_ready(free, RECEIVER), spawn_ready(free, ECHO_LINES)
        rtt_ms = float(run_python(shaped, ROUND_TRIPS_UNDER_LOAD, free.address))
        for proc in (sink, echo):
            proc.kill()
            proc.communicate()  # closes its stdout pipe
    if slow:
        assert rtt_ms > 25, rtt_ms  # behind a nearly full 50 ms queue
    else:
        assert rtt_ms < 10, rtt_ms


@pytest.mark.parametrize(
    ("queueing", "reordered"), [("fifo", False), ("requests-first", False), ("small-first", True)]
)
def test_only_small_first_reorders_a_bulk_flow_with_small_segments_in_it(
    queueing: str, reordered: bool
) -> None:
    """What "small-first" gets wrong: a bulk flow's own small segments (a TLS record with
    a HAVE) overtake its data, and the sender sees reordering; queues that keep a flow in
    order leave TCP nothing to see."""
    with Testbed(PREFIX) as bed:
        shaped = bed.add_host("shaped", rate_mbit=10.0, queueing=queueing, first_ports=(7002,))
        free = bed.add_host("free")
        # into the shaped host: its download queue, in the hub, holds what a fast sender sent
        sink = spawn_ready(shaped, COUNTING_RECEIVER, str(60 * ((16 << 10) + 40)))
        seen = run_python(free, MIXED_SENDER, shaped.address)
        sink.communicate(timeout=30)
    assert "bytes_acked" in seen, seen  # ss did describe the connection
    assert ("reord_seen" in seen) == reordered, seen


def test_close_kills_processes_and_removes_namespaces_when_the_block_raises(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netns, "_TERM_GRACE_S", 0.3)
    with pytest.raises(RuntimeError, match="boom"), Testbed(PREFIX) as bed:
        polite = bed.add_host("a").spawn(["sleep", "60"])
        stubborn = spawn_ready(bed.add_host("b"), IGNORES_SIGTERM)
        raise RuntimeError("boom")
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert stubborn.stdout is not None
    stubborn.stdout.close()
    assert ours() == []
    bed.close()  # idempotent
    with pytest.raises(TestbedError, match="closed"):
        bed.add_host("c")


def test_a_host_that_fails_half_way_is_still_cleaned_up(monkeypatch: pytest.MonkeyPatch) -> None:
    real_sh = netns._sh

    def failing_veth(command: str) -> str:
        return real_sh(command.replace("type veth", "type no-such-kind"))

    with Testbed(PREFIX) as bed:
        bed.add_host("a")
        monkeypatch.setattr(netns, "_sh", failing_veth)
        with pytest.raises(TestbedError, match=r"`ip link add eth0 .* no-such-kind.*` failed"):
            bed.add_host("b")
        monkeypatch.undo()
        assert f"{PREFIX}-b" in ours()


def test_a_namespace_that_already_exists_is_reported_and_left_alone() -> None:
    subprocess.run(["ip", "netns", "add", f"{PREFIX}-a"], check=True)
    try:
        with Testbed(PREFIX) as bed, pytest.raises(TestbedError, match="cleanup_stale"):
            bed.add_host("a")
        assert ours() == [f"{PREFIX}-a"]
    finally:
        subprocess.run(["ip", "netns", "del", f"{PREFIX}-a"], check=True)


def test_cleanup_stale_removes_a_crashed_runs_namespaces_and_processes() -> None:
    for name in ("hub", "a"):
        subprocess.run(["ip", "netns", "add", f"{PREFIX}-{name}"], check=True)
    subprocess.run(["ip", "netns", "add", f"{PREFIX}x"], check=True)  # another prefix
    orphan = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-a", "sleep", "60"])
    try:
        assert sorted(cleanup_stale(PREFIX)) == [f"{PREFIX}-a", f"{PREFIX}-hub"]
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert ours() == [f"{PREFIX}x"]
        assert cleanup_stale(PREFIX) == []
    finally:
        subprocess.run(["ip", "netns", "del", f"{PREFIX}x"], check=True)


def test_invalid_requests_are_refused_before_anything_is_built() -> None:
    with pytest.raises(TestbedError, match="subnet"):
        Testbed(PREFIX, subnet="10.77")
    with Testbed(PREFIX) as bed:
        for name in ("hub", "no spaces", ""):
            with pytest.raises(TestbedError, match="host name"):
                bed.add_host(name)
        with pytest.raises(TestbedError, match="rate_mbit"):
            bed.add_host("a", rate_mbit=0)
        with pytest.raises(TestbedError, match="queueing must be one of small-first, requests"):
            bed.add_host("a", rate_mbit=1, queueing="fq")
        with pytest.raises(TestbedError, match="needs first_ports"):
            bed.add_host("a", rate_mbit=1, queueing="requests-first")
        with pytest.raises(TestbedError, match="first_ports must be TCP ports"):
            bed.add_host("a", rate_mbit=1, queueing="requests-first", first_ports=(0,))
        assert ours() == []
