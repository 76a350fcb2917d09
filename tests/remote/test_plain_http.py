"""A plain static server (``python -m http.server``: no Range, no ETag, HTML listings):
loads, inspects and whole-directory pulls work, said once; re-pulls skip what is there."""

from __future__ import annotations

import functools
import http.server
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import pagefault
from pagefault.sources import whole_body

from .conftest import assert_same_tensors, reference
from .test_manifests import publish

EXTRA = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b"{}", "vocab.txt": b"a\nb\n"}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def plain_server(served_model: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The sharded model plus config/tokenizer files, served by http.server's own handler."""
    root = tmp_path / "www"
    shutil.copytree(served_model / "sharded", root / "model")
    publish(root / "model")
    for name, data in EXTRA.items():
        (root / "model" / name).write_bytes(data)
    (root / "model" / ".hidden").write_bytes(b"secret")
    (root / "model" / "1_Pooling").mkdir()  # as sentence-transformers models have
    (root / "model" / "1_Pooling" / "config.json").write_bytes(b'{"pooling_mode": "mean"}')
    (root / "model" / "1_Pooling" / ".cache").write_bytes(b"hidden")
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    whole_body._warned.clear()
    try:
        yield f"http://127.0.0.1:{server.server_port}/model/", root / "model"
    finally:
        server.shutdown()
        server.server_close()


def test_loads_and_inspects_without_range_support_said_once(
    plain_server: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, local = plain_server
    with caplog.at_level(logging.WARNING, logger="pagefault"):
        for cache in (False, True):
            assert_same_tensors(pagefault.load(url, cache=cache), reference(local))
        stream = pagefault.stream(url, mmap=False, cache=False)
        assert_same_tensors(dict(stream), reference(local))
        assert stream.stats.verified
        assert pagefault.inspect(url).total_bytes == pagefault.inspect(local).total_bytes
    said = [r for r in caplog.records if "ignores HTTP Range requests" in r.getMessage()]
    assert len(said) == 1


def test_pull_brings_the_whole_directory_and_skips_what_is_there(
    plain_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, local = plain_server
    first = pagefault.pull(url, tmp_path / "out")

    def visible(root: Path) -> list[str]:
        names = (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        return sorted(n for n in names if not any(c.startswith(".") for c in n.split("/")))

    pulled, wanted = visible(tmp_path / "out"), visible(local)
    assert pulled == wanted and "1_Pooling/config.json" in pulled and first.verified
    for name in pulled:
        assert (tmp_path / "out" / name).read_bytes() == (local / name).read_bytes(), name
    second = pagefault.pull(url, tmp_path / "out")
    shards = [f.name for f in pagefault.inspect(local).files]
    assert set(shards) <= set(second.skipped)  # checked against the manifest: no ETag here
    pooling = len((local / "1_Pooling" / "config.json").read_bytes())
    assert second.downloaded == sum(len(data) for data in EXTRA.values()) + pooling


def test_include_and_exclude_pick_the_other_files(
    plain_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = plain_server
    result = pagefault.pull(url, tmp_path / "a", include=["*.json"], exclude=["tokenizer*"])
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert "config.json" in names and "tokenizer.json" not in names and "vocab.txt" not in names
    assert {f.name for f in pagefault.inspect(url).files} <= names  # weights always come
    assert "config.json" in result.files


def test_progress_knows_its_total_and_counts_only_fetched_bytes(
    plain_server: tuple[str, Path], tmp_path: Path
) -> None:
    """What a progress bar needs: the total first, then only bytes that moved (bytes kept
    from an earlier pull would make the speed readout lie)."""
    url, _ = plain_server
    for _ in range(2):  # a fresh pull, then one that skips the weights
        events: list[tuple[str, int]] = []
        record = events.append
        result = pagefault.pull(
            url,
            tmp_path / "out",
            on_total=lambda n, record=record: record(("total", n)),
            on_progress=lambda n, record=record: record(("progress", n)),
        )
        assert events[0][0] == "total" and [kind for kind, _ in events].count("total") == 1
        moved = sum(n for kind, n in events if kind == "progress")
        assert events[0][1] == moved == result.downloaded


def test_pulling_a_local_directory_into_itself_leaves_the_destination_out(
    served_model: Path, tmp_path: Path
) -> None:
    source = tmp_path / "model"
    shutil.copytree(served_model / "single", source)
    (source / "config.json").write_text("{}")
    first = pagefault.pull(source, source / "copy")
    second = pagefault.pull(source, source / "copy")
    assert not (source / "copy" / "copy").exists()
    assert "config.json" in first.files and sorted(second.files) == sorted(first.files)
