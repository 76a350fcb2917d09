"""Keep each forwarding hop's send queue short: ``net.ipv4.tcp_notsent_lowat``.

In a chain every node forwards a piece as soon as it is verified, so a hop's lag is the
data queued ahead of it. libtorrent's sockets take the kernel's autotuned send buffer,
which fills with hundreds of KiB of not-yet-sent data: at 25 Mbit/s each hop lagged
0.5-0.8 s and 16 nodes took 39 s; with the unsent part capped at 16 KiB, 0.3 s and 31 s
(docs/benchmarks.md). The cap leaves the congestion window alone (a fast link still fills);
it only stops the socket from queueing far ahead. libtorrent's own
``send_not_sent_low_watermark`` would set it per socket, but the PyPI 2.1.1 build never
does (strace of a peer connection shows IP_TOS and no TCP_NOTSENT_LOWAT), so the agent
sets the sysctl of its network namespace (a pod's own, or the host's with
``hostNetwork``) when it may, and says so; otherwise it logs how to set it.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["NOTSENT_LOWAT", "NOTSENT_LOWAT_SYSCTL", "cap_unsent_bytes"]

NOTSENT_LOWAT = 16 * 1024
NOTSENT_LOWAT_SYSCTL = Path("/proc/sys/net/ipv4/tcp_notsent_lowat")

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
