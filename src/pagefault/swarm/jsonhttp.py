"""The control planes' client: one JSON request, its answer (or its stream of JSON lines)
or a ``ControlError``.

The standard library's client, so loaders asking their node's agent import no HTTP
framework (the servers are :mod:`pagefault.swarm.server`); bulk bytes never pass through
here (libtorrent carries them).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPResponse
from typing import Any

from pagefault.errors import ControlError

__all__ = ["ControlError", "call", "lines", "split_address"]


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (as every listener and peer is named here) into its parts."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ControlError(f"{address!r}: want host:port")
    return host, int(port)


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
    if isinstance(body, dict):
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with _answer(request, timeout) as response:
        raw = response.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def lines(url: str, *, timeout: float) -> Iterator[Any]:
    """A GET whose answer is newline-delimited JSON, one decoded line at a time as the
    server sends it; ``timeout``: the longest silence. Raises ControlError, also for an
    unreadable line."""
    with _answer(urllib.request.Request(url), timeout) as response:
        while True:
            line = response.readline()  # a failed read: a ControlError from _answer
            if not line:
                return
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise ControlError(f"GET {url}: an unreadable line: {line[:100]!r}") from exc


@contextmanager
def _answer(request: urllib.request.Request, timeout: float) -> Iterator[HTTPResponse]:
    """The open answer to ``request``; an HTTP error status, a failed connection or a read
    that fails while the answer is open, as a ``ControlError`` naming the request (and
    the server's own ``error``)."""
    what = f"{request.get_method()} {request.full_url}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            yield response
    except urllib.error.HTTPError as exc:
        detail = _error_of(exc.read().decode(errors="replace")[:300])
        raise ControlError(f"{what}: HTTP {exc.code}: {detail}", exc.code) from exc
    except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
        # HTTPException: the peer went away mid-answer (IncompleteRead, RemoteDisconnected)
        raise ControlError(f"{what}: {type(exc).__name__}: {exc}") from exc
