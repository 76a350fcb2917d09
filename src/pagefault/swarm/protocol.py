"""What both ends of the control plane agree on: the beat, when a member is gone, and the
health path. A module of its own so the simulator and the CLI get them without importing
the coordinator's HTTP and Redis stack."""

from __future__ import annotations

__all__ = ["HEALTH_PATH", "HEARTBEAT_S", "MEMBER_TTL_S"]

HEALTH_PATH = "/v1/health"

HEARTBEAT_S = 0.5  # agents' heartbeat period
# A node is gone after 4 missed beats: 3 (1.5 s) dropped live nodes whose beat was late
# while 16 agents started on 2 CPUs, and the transient head fetched from the origin.
MEMBER_TTL_S = 4 * HEARTBEAT_S
