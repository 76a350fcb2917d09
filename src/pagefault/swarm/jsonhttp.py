"""A tiny JSON-over-HTTP server and client for the coordinator and agent control planes.

Control messages are a few hundred bytes a second per node, so the standard library's
threading HTTP server is enough; bulk bytes never pass through here (libtorrent carries
them). Routes are (method, regex) pairs; handlers return (status, JSON-able body).
"""

from __future__ import annotations

import hmac
import http.client
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pagefault.errors import ControlError

__all__ = ["ControlError", "JsonServer", "Request", "call", "split_address"]

MAX_BODY = 64 * 1024 * 1024  # a published manifest of a very large model


class Request:
    def __init__(self, match: re.Match[str], body: bytes, query: dict[str, str]) -> None:
        self.match = match
        self.body = body
        self.query = query

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise ControlError(f"request body is not JSON: {exc}", 400) from exc
        if not isinstance(data, dict):
            raise ControlError("request body must be a JSON object", 400)
        return data


Handler = Callable[[Request], tuple[int, Any]]


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (as every listener and peer is named here) into its parts."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ControlError(f"{address!r}: want host:port")
    return host, int(port)


class JsonServer:
    """Serve ``routes`` on ``address`` ("host:port", port 0 = any free one) in a background
    thread."""

    def __init__(
        self,
        routes: Sequence[tuple[str, str, Handler]],
        address: str,
        token: str | None,
        *,
        public: frozenset[str] = frozenset(),
    ) -> None:
        """``public``: exact paths served without the token (a health probe's)."""
        compiled = [(method, re.compile(pattern + "$"), fn) for method, pattern, fn in routes]
        expected = f"Bearer {token}".encode() if token else None

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: callers log what matters."""

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PUT(self) -> None:
                self._dispatch("PUT")

            def _dispatch(self, method: str) -> None:
                path, _, raw_query = self.path.partition("?")
                query = dict(p.partition("=")[::2] for p in raw_query.split("&") if p)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    return self._reply(413, {"error": "request body too large"})
                body = self.rfile.read(length)
                given = (self.headers.get("Authorization") or "").encode()
                guarded = expected is not None and path not in public
                if guarded and not hmac.compare_digest(given, expected or b""):
                    return self._reply(401, {"error": "missing or wrong swarm token"})
                for want, pattern, fn in compiled:
                    match = pattern.match(path)
                    if want == method and match:
                        try:
                            status, result = fn(Request(match, body, query))
                        except ControlError as exc:
                            status, result = exc.status or 500, {"error": str(exc)}
                        return self._reply(status, result)
                self._reply(404, {"error": f"no route {method} {path}"})

            def _reply(self, status: int, result: Any) -> None:
                if isinstance(result, bytes):  # e.g. Prometheus text exposition
                    data, kind = result, "text/plain; charset=utf-8"
                else:
                    data, kind = json.dumps(result).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(split_address(address), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> JsonServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _error_of(body: str) -> str:
    """A JSON answer's ``error`` (what our servers send), else the body as it came."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return str(parsed["error"]) if isinstance(parsed, dict) and "error" in parsed else body


def call(
    url: str,
    *,
    method: str = "GET",
    body: dict[str, Any] | bytes | None = None,
    token: str | None = None,
    timeout: float = 5.0,
) -> Any:
    """One request; the JSON (or, for non-JSON answers, raw bytes) reply. Raises ControlError."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = _error_of(exc.read().decode(errors="replace")[:300])
        raise ControlError(f"{method} {url}: HTTP {exc.code}: {detail}", exc.code) from exc
    except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
        # HTTPException: the peer went away mid-answer (IncompleteRead, RemoteDisconnected)
        raise ControlError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
    try:
        return json.loads(raw)
    except ValueError:
        return raw
