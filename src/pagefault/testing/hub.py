"""A loopback server that speaks the Hugging Face Hub's endpoints, for ``hf://`` tests.

``root/ORG/NAME/`` holds each repository's files. The server answers the two endpoints a
download uses: ``GET /api/models/ORG/NAME/revision/REV`` (commit hash and file list with
sizes, as ``?blobs=true`` returns them) and ``/ORG/NAME/resolve/REV/PATH``, which
redirects to a second server standing in for the CDN (ranged GETs, ETags). Each
repository has one commit (a hash of its files), named by ``main`` and by itself. With
``token`` set, both endpoints want ``Authorization: Bearer TOKEN`` (the CDN does not, as
the Hub's signed CDN URLs do not). Errors carry the Hub's ``X-Error-Code`` header, so
``huggingface_hub`` raises the same exceptions it raises against the real Hub.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from pagefault.testing.http_origin import HTTPOrigin

__all__ = ["HubServer"]


class HubServer:
    """Serve the repositories under ``root``; use as a context manager; ``url`` is the
    value for ``HF_ENDPOINT``."""

    def __init__(self, root: str | Path, *, token: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.token = token
        self.cdn = HTTPOrigin(self.root)
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had a token)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def commit(self, repo: str) -> str:
        """The one commit of ``repo``: a hash of its file names and contents."""
        digest = hashlib.sha1(repo.encode())
        for name, path in self.files(repo).items():
            digest.update(name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()

    def files(self, repo: str) -> dict[str, Path]:
        base = self.root / repo
        return {p.relative_to(base).as_posix(): p for p in sorted(base.rglob("*")) if p.is_file()}

    def __enter__(self) -> HubServer:
        self.cdn.start()
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.cdn.stop()


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._route()

    def do_HEAD(self) -> None:
        self._route()

    def _route(self) -> None:
        hub = self.server_hub
        path = unquote(urlsplit(self.path).path)
        authorized = self.headers.get("Authorization") == f"Bearer {hub.token}"
        hub.requests.append((self.command, path, "Authorization" in self.headers))
        parts = path.strip("/").split("/")
        if hub.token and not authorized:
            self._error(401, "RepoNotFound", "Invalid credentials")
        elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            self._info(f"{parts[2]}/{parts[3]}", "/".join(parts[5:]))
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        else:
            self._error(404, "EntryNotFound", "not a Hub endpoint")

    def _known(self, repo: str, revision: str) -> str | None:
        hub = self.server_hub
        if not (hub.root / repo).is_dir():
            self._error(404, "RepoNotFound", f"Repository {repo} not found")
            return None
        commit = hub.commit(repo)
        if revision not in ("main", commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return commit

    def _info(self, repo: str, revision: str) -> None:
        commit = self._known(repo, revision)
        if commit is None:
            return
        siblings = [
            {"rfilename": name, "size": path.stat().st_size}
            for name, path in self.server_hub.files(repo).items()
        ]
        body = json.dumps({"id": repo, "modelId": repo, "sha": commit, "siblings": siblings})
        self._send(200, body.encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo: str, revision: str, name: str) -> None:
        if self._known(repo, revision) is None:
            return
        if name not in self.server_hub.files(repo):
            self._error(404, "EntryNotFound", f"{name} does not exist at {revision}")
            return
        location = f"{self.server_hub.cdn.url}/{quote(repo)}/{quote(name)}"
        self._send(302, b"", {"Location": location})

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, {"X-Error-Code": code, "Content-Type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
