"""A swarm's first step on a node: the model's description and its piece manifest.

The description comes from the first node of the fleet to describe the origin
(:mod:`pagefault.swarm.description`). The manifest (per-piece SHA-256 and v2 Merkle
roots) is what every peer verifies against, so it comes from the origin when the origin
publishes one with roots, else from the coordinator (a first fetcher's), else this node
builds it: the root of the first stripe downloads the model once, hashes it and
publishes the result.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from pagefault.errors import PagefaultError, SwarmError
from pagefault.manifest import PieceManifest
from pagefault.pieces import make_piece_manifest, pull
from pagefault.sources.describe import ModelDescription
from pagefault.swarm.coordinator_client import CoordinatorClient
from pagefault.swarm.description import described
from pagefault.swarm.protocol import HEARTBEAT_S

__all__ = ["BUILT_PIECE_SIZE", "ModelPlan", "obtain"]

BUILT_PIECE_SIZE = 1 << 20  # a manifest hashed on the fly: small pieces keep tree hops short


@dataclass(frozen=True)
class ModelPlan:
    """What a node knows of a model before its torrent exists."""

    manifest: PieceManifest
    description: ModelDescription | None  # None when the origin could not say
    staging: Path | None  # a first fetcher's full download (read instead of the origin)
    reasons: tuple[str, ...]  # what did not go the usual way, for ``swarm status``


def obtain(
    uri: str, coordinator: CoordinatorClient, staging: Path, stop: threading.Event
) -> ModelPlan:
    """Describe ``uri`` and find (or build, into ``staging``) its manifest; ``stop`` ends
    the wait for a first fetcher's manifest with ``SwarmError``."""
    reasons: list[str] = []
    try:
        description: ModelDescription | None = described(uri, coordinator, stop)
    except PagefaultError as exc:  # the coordinator may still have a first fetcher's manifest
        reasons.append(f"cannot describe {uri} at the origin: {exc}")
        description = None
    published = description.pieces if description is not None else None
    if published is not None and all(f.roots or not f.size for f in published.files):
        return ModelPlan(published, description, None, tuple(reasons))
    while not stop.is_set():
        shared = coordinator.shared_manifest()
        if shared is not None:
            return ModelPlan(shared, description, None, tuple(reasons))
        beat = coordinator.heartbeat({})
        if beat is None or 0 in beat.fetch:  # the first stripe's root builds it
            reasons.append("no published manifest with v2 roots: built it from the origin")
            pull(uri, staging)
            built = make_piece_manifest(staging, piece_size=BUILT_PIECE_SIZE)
            coordinator.publish(built)
            return ModelPlan(built, description, staging, tuple(reasons))
        stop.wait(HEARTBEAT_S)
    raise SwarmError("stopped before the model's manifest was available")
