"""One load, every source: open a model so each piece comes from the cheapest place.

The pass runs one way, down: describe the model (from the node cache's catalog, else the
origin), build each file's chain of links below the cache (swarm peers through the node
agent, then the origin), put the node cache on top (RAM tier, disk tier; it checks and
tees whatever passes below it), then read the headers through the result. Local paths
have one link: the file itself.
"""

from __future__ import annotations

import os

from pagefault.cache import CacheChoice, node_cache
from pagefault.cache.resolve import cached_description, cached_sources, catalog_entry
from pagefault.sources import ResolvedModel, resolve
from pagefault.sources.chain import ChainSource, Link, SourceCounters
from pagefault.sources.describe import ModelDescription, describe
from pagefault.sources.object_store import is_remote
from pagefault.sources.resolve import Provenance, open_description
from pagefault.swarm.client import AgentModel, SwarmFileSource
from pagefault.swarm.config import configured_agent

__all__ = ["AgentChoice", "CacheChoice", "node_cache", "open_model", "swarm_agent"]

PathLike = str | os.PathLike[str]
# None: the configured agent (PAGEFAULT_AGENT or [swarm] agent), if any; False: none;
# a URL: that agent.
AgentChoice = str | bool | None


def open_model(
    source: PathLike, cache: CacheChoice = None, agent: AgentChoice = None
) -> ResolvedModel:
    """Resolve ``source``; a remote model reads through the node cache (unless it is off)
    and the node agent's swarm (when one is configured), then the origin."""
    if not is_remote(source):
        return resolve(source)
    uri = str(source)
    node = node_cache(cache)
    url = swarm_agent(agent)
    swarm = AgentModel(url, uri) if url else None
    counters = SourceCounters()
    if node is None:
        description = describe(uri)
        chains = _chains(description, swarm, counters)
        provenance = Provenance(counters=counters, streaming=swarm is not None)
        return open_description(description, chains, provenance=provenance)
    entry = catalog_entry(uri, node)
    held = swarm is not None and entry is not None and entry.held_by(node)
    if swarm is not None and not held:
        swarm.start()  # the agent records the model in the node cache: no origin round trips
        entry = catalog_entry(uri, node)
    known = entry
    description, entry = cached_description(uri, node, entry)
    if swarm is not None and (held if entry is known else entry.held_by(node)):
        swarm = None  # every piece is on the node already: nothing to wait for
    chains = _chains(description, swarm, counters)
    sources, provenance = cached_sources(entry, chains, node, counters, streaming=swarm is not None)
    return open_description(description, sources, provenance=provenance)


def swarm_agent(agent: AgentChoice) -> str | None:
    """The agent URL a call asked for, or None when it should not use one."""
    if agent is False:
        return None
    if isinstance(agent, str):
        return agent
    return configured_agent()


def _chains(
    description: ModelDescription, swarm: AgentModel | None, counters: SourceCounters
) -> list[ChainSource]:
    """Per file: swarm peers (through the node's agent, if any), then the origin."""
    chains = []
    for file, origin in zip(description.files, description.origins(), strict=True):
        links = [Link("peers", SwarmFileSource(swarm, file), fills_cache=True)] if swarm else []
        chains.append(ChainSource([*links, Link("origin", origin)], counters))
    return chains
