"""Keep each forwarding hop's queues short: what waits ahead of a fresh piece's HAVE.

In a chain every node forwards a piece as soon as it is verified, and its child asks for
it only once the HAVE arrives, which queues behind the data already sent. Two queues:

* **Unsent bytes** (``net.ipv4.tcp_notsent_lowat``). libtorrent's sockets take the
  kernel's autotuned send buffer, which fills with hundreds of KiB of not-yet-sent data:
  at 25 Mbit/s each hop lagged 0.5-0.8 s and 16 nodes took 39 s; with the unsent part
  capped at 16 KiB, 0.3 s and 31 s (docs/benchmarks.md). libtorrent's own
  ``send_not_sent_low_watermark`` would set it per socket, but the PyPI 2.1.1 build never
  does (strace of a peer connection shows IP_TOS and no TCP_NOTSENT_LOWAT), so the agent
  sets the sysctl of its network namespace (a pod's own, or the host's with
  ``hostNetwork``) when it may, and says so; otherwise it logs how to set it.
* **Bytes in flight** (the peer sockets' receive buffer). The sender's congestion window
  grows until the bottleneck's queue is full: on the testbed's 40 Mbit/s links 100-245 KB
  sat in the shaping queue of every forwarding link (20-50 ms), and the hops lagged 55-80
  ms. With the agent's declared link rate (``--link-mbit``) known, a peer socket's receive
  buffer is sized to ``RECEIVE_WINDOW_S`` of it: the window still fills the link at round
  trips up to that long, and no more queues. Queues fell to ~20 KB, hops to 18-21 ms, and
  eight nodes finished in 5.98 s against 6.14 s (medians of interleaved fleets;
  docs/benchmarks.md, "Session 22"). A buffer larger than ``net.core.rmem_max`` is not
  set: the kernel would clamp it, and a fixed buffer turns autotuning off, which would cap
  a fast link.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = [
    "NOTSENT_LOWAT",
    "NOTSENT_LOWAT_SYSCTL",
    "RMEM_MAX_SYSCTL",
    "cap_unsent_bytes",
    "receive_buffer_bytes",
]

NOTSENT_LOWAT = 16 * 1024
NOTSENT_LOWAT_SYSCTL = Path("/proc/sys/net/ipv4/tcp_notsent_lowat")
RECEIVE_WINDOW_S = 0.005  # a peer socket's receive buffer: this long of the declared link
MIN_RECEIVE_BUFFER = 32 * 1024  # two BitTorrent blocks (a request's unit)
RMEM_MAX_SYSCTL = Path("/proc/sys/net/core/rmem_max")

_log = logging.getLogger("pagefault.agent")


def cap_unsent_bytes(limit: int, sysctl: Path = NOTSENT_LOWAT_SYSCTL) -> int | None:
    """Lower the namespace's ``tcp_notsent_lowat`` to ``limit`` bytes if it is higher.

    Returns the value in force afterwards (None where the kernel has no such setting);
    ``limit`` 0 leaves it alone."""
    try:
        current = int(sysctl.read_text())
    except (OSError, ValueError):
        return None
    if limit <= 0 or current <= limit:
        return current
    try:
        sysctl.write_text(f"{limit}\n")
    except OSError as exc:
        _log.warning(
            "cannot lower %s from %d to %d (%s): chain hops will lag; run "
            "`sysctl -w net.ipv4.tcp_notsent_lowat=%d` on this node",
            sysctl,
            current,
            limit,
            exc.strerror or exc,
            limit,
        )
        return current
    _log.info("lowered %s from %d to %d bytes (short forwarding queues)", sysctl, current, limit)
    return limit


def receive_buffer_bytes(link_mbit: float, rmem_max: Path = RMEM_MAX_SYSCTL) -> int:
    """The receive buffer for peer sockets on a link of ``link_mbit`` (libtorrent's
    ``recv_socket_buffer_size``): ``RECEIVE_WINDOW_S`` of the link, at least
    ``MIN_RECEIVE_BUFFER``; 0 (the kernel autotunes) for an undeclared link, or where that
    is more than the kernel lets a socket set (``rmem_max``) or it cannot be read."""
    if link_mbit <= 0:
        return 0
    size = max(MIN_RECEIVE_BUFFER, int(link_mbit * 1e6 / 8 * RECEIVE_WINDOW_S))
    try:
        limit = int(rmem_max.read_text())
    except (OSError, ValueError):
        return 0
    return size if size <= limit else 0
