"""A loopback HTTP origin that behaves like a CDN or object store, badly on request.

It serves the files under a directory with single-range GETs, ETags and ``If-Match``,
caps each connection's bandwidth, counts the bytes it sends, and injects the faults a
real origin produces: connections reset mid-body, truncated bodies, 500/503/429, a
slow first byte, and an ETag that changes while a client is reading.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["STATS_PATH", "FaultPlan", "HTTPOrigin"]

STATS_PATH = "/.pagefault-origin-stats"  # JSON {"bytes_sent": n}; never a file name
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_PACED_CHUNK = 256 * 1024  # ~5 ms at 50 MB/s: smooth pacing without a hot Python loop
_FREE_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FaultPlan:
    """Fractions of GET requests that go wrong, and how (drawn from a seeded RNG)."""

    reset_rate: float = 0.0  # connection reset (RST) part-way through the body
    truncate_rate: float = 0.0  # body closed cleanly part-way through
    error_rate: float = 0.0  # answered with one of ``error_statuses``
    error_statuses: tuple[int, ...] = (500, 503, 429)
    first_byte_delay: float = 0.0  # seconds before the status line of every GET
    seed: int = 0


class HTTPOrigin:
    """Serve ``root`` on 127.0.0.1; use as a context manager. ``url`` ends without a slash."""

    def __init__(
        self,
        root: str | Path,
        *,
        bandwidth: float | None = None,
        faults: FaultPlan | None = None,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.root = Path(root).resolve()
        self.host, self.port = host, port
        self.tls = tls
        self.bandwidth = bandwidth  # bytes per second per connection; None = unlimited
        self.faults = faults or FaultPlan()
        self.bytes_sent = 0
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.credentialed = 0  # requests that carried an Authorization header
        self._etag_salt: dict[str, int] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the origin first"
        port = self._server.server_address[1]
        return f"{'https' if self.tls else 'http'}://{self.host}:{port}"

    def start(self) -> HTTPOrigin:
        origin = self

        class Handler(_Handler):
            pass

        Handler.origin = origin
        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._server.request_queue_size = 128
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HTTPOrigin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def change_etag(self, path: str) -> None:
        """Make ``path`` look like a new version (its content stays, its ETag changes)."""
        with self._lock:
            self._etag_salt[path] = self._etag_salt.get(path, 0) + 1

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_sent = 0
            self.requests.clear()

    def etag(self, path: str, file: Path) -> str:
        stat = file.stat()
        salt = self._etag_salt.get(path, 0)
        key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}:{salt}".encode()
        return '"' + hashlib.sha256(key).hexdigest()[:32] + '"'

    def draw_fault(self) -> str | None:
        with self._lock:
            roll = self._rng.random()
        plan = self.faults
        for kind, rate in (
            ("error", plan.error_rate),
            ("reset", plan.reset_rate),
            ("truncate", plan.truncate_rate),
        ):
            if roll < rate:
                return kind
            roll -= rate
        return None

    def pick(self, choices: tuple[int, ...]) -> int:
        with self._lock:
            return self._rng.choice(choices)

    def fraction(self) -> float:
        with self._lock:
            return self._rng.uniform(0.05, 0.95)

    def record(self, method: str, path: str, status: int, sent: int = 0) -> None:
        with self._lock:
            self.requests.append((method, path, status))
            self.bytes_sent += sent


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as object stores and CDNs serve: the headers go out in one write and a
    # small body in another, and with Nagle's algorithm the body waited for the client's
    # delayed ACK of the headers, 40 ms on every small GET (a manifest, an index).
    disable_nagle_algorithm = True
    origin: HTTPOrigin

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read ``origin.requests`` instead."""

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if "Authorization" in self.headers:
            with self.origin._lock:
                self.origin.credentialed += 1
        if path == STATS_PATH:  # for tests driving an origin in another process
            return self._stats()
        file = self._file(path)
        if file is None:
            return self._status(404, path)
        etag = self.origin.etag(path, file)
        fault = self.origin.draw_fault() if body else None
        if body and self.origin.faults.first_byte_delay:
            time.sleep(self.origin.faults.first_byte_delay)
        if fault == "error":
            return self._status(self.origin.pick(self.origin.faults.error_statuses), path)
        wanted = self.headers.get("If-Match")
        if wanted and wanted.strip() not in ("*", etag):
            return self._status(412, path)
        size = file.stat().st_size
        span = self._range(size)
        if span is None:
            return self._status(416, path, extra={"Content-Range": f"bytes */{size}"})
        start, end = span
        partial = "Range" in self.headers
        self.send_response(206 if partial else 200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        sent = self._send_body(file, start, end, fault) if body else 0
        self.origin.record(self.command, path, 206 if partial else 200, sent)

    def _stats(self) -> None:
        data = json.dumps({"bytes_sent": self.origin.bytes_sent}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _file(self, path: str) -> Path | None:
        candidate = (self.origin.root / path.lstrip("/")).resolve()
        inside = candidate.is_relative_to(self.origin.root)
        return candidate if inside and candidate.is_file() else None

    def _range(self, size: int) -> tuple[int, int] | None:
        header = self.headers.get("Range")
        if not header:
            return 0, size
        match = _RANGE.match(header.strip())
        if not match or match.groups() == ("", ""):
            return None
        first, last = match.groups()
        if not first:
            return max(0, size - int(last)), size
        start, end = int(first), min(size, int(last) + 1 if last else size)
        return (start, end) if start < end else None

    def _status(self, code: int, path: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if code in (429, 503):
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.origin.record(self.command, path, code)

    def _send_body(self, file: Path, start: int, end: int, fault: str | None) -> int:
        stop = end
        if fault in ("reset", "truncate"):
            stop = start + int((end - start) * self.origin.fraction())
        sent = 0
        began = time.monotonic()
        chunk = _PACED_CHUNK if self.origin.bandwidth else _FREE_CHUNK
        fd = os.open(file, os.O_RDONLY)
        try:
            while start + sent < stop:
                size = min(chunk, stop - start - sent)
                count = self._send_range(fd, start + sent, size)
                if count == 0:
                    break
                sent += count
                self._pace(sent, began)
        except OSError:  # the client went away; nothing to tell it
            self.close_connection = True
        finally:
            os.close(fd)
        if fault is not None:
            self._drop_connection(reset=fault == "reset")
        return sent

    def _send_range(self, fd: int, offset: int, size: int) -> int:
        """sendfile() where the socket is plain; TLS needs the bytes in user space."""
        if self.origin.tls is None:
            return os.sendfile(self.connection.fileno(), fd, offset, size)
        data = os.pread(fd, size, offset)
        self.connection.sendall(data)
        return len(data)

    def _pace(self, sent: int, began: float) -> None:
        """Hold this connection to ``bandwidth`` bytes per second."""
        rate = self.origin.bandwidth
        if rate:
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)

    def _drop_connection(self, *, reset: bool) -> None:
        if reset:  # SO_LINGER with a zero timeout makes close() send RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


def main() -> None:
    """``python -m pagefault.testing.http_origin ROOT --host H --port P [--mbps N]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mbps", type=float, help="per-connection cap, MB/s")
    args = parser.parse_args()
    bandwidth = args.mbps * 1e6 if args.mbps else None
    with HTTPOrigin(args.root, bandwidth=bandwidth, host=args.host, port=args.port) as origin:
        print(origin.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
