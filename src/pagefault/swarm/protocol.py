"""What both ends of the control plane agree on: the beat, when a member is gone, the
health path, and how often a loader's feed hears from its agent. A module of its own so
the simulator, the CLI and loaders get them without importing the coordinator's HTTP and
Redis stack."""

from __future__ import annotations

__all__ = ["FEED_BEAT_S", "HEALTH_PATH", "HEARTBEAT_S", "MEMBER_TTL_S"]

HEALTH_PATH = "/v1/health"

HEARTBEAT_S = 0.5  # agents' heartbeat period
# A node is gone after 4 missed beats: 3 (1.5 s) dropped live nodes whose beat was late
# while 16 agents started on 2 CPUs, and the transient head fetched from the origin.
MEMBER_TTL_S = 4 * HEARTBEAT_S

FEED_BEAT_S = 10.0  # an agent's feed sends a line at least this often, pieces or none
