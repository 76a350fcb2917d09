"""The coordinator's and the agent's HTTP routes: paths and queries validated, bodies
parsed into :mod:`pagefault.swarm.messages`, then handed to the logic, which knows
nothing of HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import Path as PathParam
from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from pagefault.swarm.messages import (
    Beat,
    Credentials,
    DescriberTurn,
    FeedLine,
    Heartbeat,
    ModelRequest,
    ModelStatus,
    Report,
    SharedDescription,
    SwarmStatus,
    Timeline,
)
from pagefault.swarm.protocol import FEED_BEAT_S, HEALTH_PATH
from pagefault.swarm.server import ApiServer, control_app

if TYPE_CHECKING:
    from pagefault.swarm.agent import Agent
    from pagefault.swarm.coordinator import Coordinator

__all__ = ["agent_server", "coordinator_server"]

Name = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,128}$")]  # a node or swarm
ModelId = Annotated[str, PathParam(pattern=r"^[0-9a-f]{24}$")]
_WAITING_FEEDS = 256  # feeds waiting for a piece at once: each holds a thread meanwhile
# How long an open waits for the model's layout before answering without it (the caller
# asks again): well inside a control call's timeout (client.CALL_TIMEOUT_S).
_LAYOUT_WAIT_S = 1.0


def coordinator_server(coordinator: Coordinator, address: str) -> ApiServer:
    """The coordinator's API on ``address`` (not yet started)."""
    app = control_app(coordinator.token, public=frozenset({HEALTH_PATH}))

    @app.get(HEALTH_PATH)
    def health() -> dict[str, bool]:
        """200 when the coordination store answers, 503 with its error otherwise. Needs no
        token, so a Kubernetes probe or a load balancer can ask; it tells nothing else."""
        coordinator.health()
        return {"ok": True}

    @app.post("/v1/credentials/{node}")
    def credentials(node: Name) -> Credentials:
        return coordinator.credentials(node)

    @app.post("/v1/swarms/{swarm}/nodes/{node}")
    def heartbeat(swarm: Name, node: Name, beat: Heartbeat) -> Beat:
        return coordinator.heartbeat(swarm, node, beat)

    @app.post("/v1/swarms/{swarm}/reports/{node}")
    def report(swarm: Name, node: Name, report: Report) -> dict[str, str]:
        coordinator.report(swarm, node, report)
        return {"excluded": node}

    @app.put("/v1/swarms/{swarm}/manifest")
    async def put_manifest(swarm: Name, request: Request) -> Response:
        """The body is the manifest's own JSON, stored as it came (the first one wins)."""
        first = await run_in_threadpool(coordinator.publish_manifest, swarm, await request.body())
        return JSONResponse({"published": first}, status_code=201 if first else 200)

    @app.get("/v1/swarms/{swarm}/manifest")
    def get_manifest(swarm: Name) -> dict[str, str]:
        return {"manifest": base64.b64encode(coordinator.manifest(swarm)).decode()}

    @app.post("/v1/swarms/{swarm}/describers/{node}")
    def describer(swarm: Name, node: Name) -> DescriberTurn:
        return coordinator.describer(swarm, node)

    @app.put("/v1/swarms/{swarm}/description")
    def share_description(swarm: Name, description: SharedDescription) -> JSONResponse:
        first = coordinator.share_description(swarm, description)
        return JSONResponse({"shared": first}, status_code=201 if first else 200)

    @app.get("/v1/swarms/{swarm}")
    def status(swarm: Name) -> SwarmStatus:
        return coordinator.status(swarm)

    @app.get("/v1/swarms")
    def swarms() -> dict[str, list[str]]:
        return {"swarms": coordinator.swarms()}

    return ApiServer(app, address)


def agent_server(agent: Agent, address: str) -> ApiServer:
    """The agent's local API on ``address`` (not yet started)."""
    app = control_app(None)  # the node's own processes, on its loopback
    waiting_feeds = anyio.CapacityLimiter(_WAITING_FEEDS)

    @app.post("/v1/models")
    def open_model(request: ModelRequest) -> ModelStatus:
        job = agent.open(request.uri)
        job.wait_for_layout(_LAYOUT_WAIT_S)
        return job.describe()

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"node": agent.config.node, "models": [j.describe() for j in agent.jobs.values()]}

    @app.get("/v1/models/{model_id}")
    def describe(model_id: ModelId) -> ModelStatus:
        return agent.job(model_id).describe()

    @app.get("/v1/models/{model_id}/feed")
    def feed(model_id: ModelId) -> StreamingResponse:
        """Every piece verified on the node, each once, as it comes (newline-delimited
        ``FeedLine``s), until the model is complete or its job failed: a loader follows a
        whole load with this one request (a long poll per range was ~80 requests per
        load, each costing the agent's CPU)."""
        job = agent.job(model_id)  # an unknown model is a 404 before the stream starts

        async def stream() -> AsyncIterator[str]:
            cursor = 0
            while True:
                pieces = await anyio.to_thread.run_sync(
                    job.ledger.since, cursor, FEED_BEAT_S, limiter=waiting_feeds
                )
                cursor += len(pieces)
                complete = job.ledger.complete and cursor >= (job.ledger.total or 0)
                error = job.error or ("the agent is shutting down" if job.stopping else None)
                line = FeedLine(pieces=pieces, complete=complete, error=error)
                yield line.model_dump_json() + "\n"
                if line.complete or line.error:
                    return

        return StreamingResponse(stream(), media_type="application/x-ndjson")

    @app.get("/v1/models/{model_id}/timeline")
    def timeline(model_id: ModelId) -> Timeline:
        ledger = agent.job(model_id).ledger
        return Timeline(started_at=ledger.started_at, verified_s=ledger.timeline())

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(agent.metrics_text(), media_type=CONTENT_TYPE_LATEST)

    return ApiServer(app, address)
