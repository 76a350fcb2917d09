"""Serving a control plane: a FastAPI app on uvicorn, in a background thread of the agent
or coordinator process.

Control messages are a few hundred bytes a second per node (bulk bytes go through
libtorrent), so one uvicorn worker is plenty. The app validates bodies, paths and
queries into :mod:`pagefault.swarm.messages`; every error answers JSON ``{"error": ...}``
(what :func:`pagefault.swarm.jsonhttp.call` turns into a ``ControlError``): a failed
validation is a 400 naming the field, a ``ControlError`` its own status. Every route but
the ``public`` ones needs the swarm token.

Only processes that serve import this module (FastAPI and uvicorn take ~0.25 s to
import, which every other ``pagefault`` command would pay).
"""

from __future__ import annotations

import hmac
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pagefault.errors import ControlError
from pagefault.swarm.jsonhttp import split_address

__all__ = ["ApiServer", "control_app"]

_MAX_BODY = 64 * 1024 * 1024  # a published manifest of a very large model
_START_S = 10.0


def control_app(token: str | None, *, public: frozenset[str] = frozenset()) -> FastAPI:
    """An app whose routes (added by the caller) need ``Bearer <token>`` unless their
    path is in ``public`` (a health probe's); ``token=None``: none needed (an agent's
    API, which listens on the node's loopback)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    expected = f"Bearer {token}".encode() if token else None
    app.add_middleware(_Guard, expected=expected, public=public)

    @app.exception_handler(ControlError)
    async def control_error(request: Request, exc: ControlError) -> Response:
        return _error(exc.status or 500, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error(400, "; ".join(_field_error(e) for e in exc.errors()))

    return app


class _Guard:
    """Every request's Content-Length and token, checked before any route. A plain ASGI
    middleware: FastAPI's ``@app.middleware`` kind runs each request through a task group
    and memory streams, which cost more than the agent's busiest route itself."""

    def __init__(self, app: ASGIApp, *, expected: bytes | None, public: frozenset[str]) -> None:
        self.app = app
        self.expected = expected
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = dict(scope["headers"])  # lower-case names, as ASGI servers give them
        length = headers.get(b"content-length", b"0")
        if not length.isdigit():
            return _error(
                400, f"Content-Length {length.decode(errors='replace')!r} is not a byte count"
            )
        if int(length) > _MAX_BODY:
            return _error(413, "request body too large")
        if self.expected is None or scope["path"] in self.public:
            return None
        if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
            return _error(401, "missing or wrong swarm token")
        return None


class ApiServer:
    """``app`` on ``address`` ("host:port", port 0 = any free one), in a daemon thread."""

    def __init__(self, app: FastAPI, address: str) -> None:
        self._address = address
        config = uvicorn.Config(
            app,
            log_config=None,  # the process's logging stays as the CLI set it
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """Where it listens (with the port the kernel chose for port 0)."""
        if self._socket is None:
            raise ControlError(f"the API for {self._address} is not started")
        host, port = self._socket.getsockname()[:2]
        return f"{host}:{port}"

    def start(self) -> ApiServer:
        """Listen (here, so a taken address is this call's ``ControlError``), then serve."""
        host, port = split_address(self._address)
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host.strip("[]"), port))
            listener.listen(128)
        except OSError as exc:
            listener.close()
            raise ControlError(f"cannot serve on {self._address}: {exc.strerror or exc}") from exc
        self._socket = listener
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ControlError(f"the API on {self.address} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def _field_error(error: Mapping[str, Any]) -> str:
    """``body.link_mbit: Input should be greater than or equal to 0``."""
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg')}"
