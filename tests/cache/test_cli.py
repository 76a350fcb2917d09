"""``pagefault cache ...`` end to end: the CLI builds its NodeCache from the environment.

The autouse ``isolated_cache`` fixture (tests/conftest.py) points the cache at a per-test
directory: ``<root>/ram`` is the RAM tier, ``<root>/disk`` the disk tier and catalog.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import pagefault
from pagefault.cache import NodeCache
from pagefault.cache.catalog import uri_key
from pagefault.cache.locks import FileLock
from pagefault.cli import app
from pagefault.manifest import piece_count
from pagefault.testing import HTTPOrigin

from ..helpers import flip_byte
from .conftest import PIECE

runner = CliRunner()
TRAILER = 16  # bytes after a piece's own bytes in its file


@pytest.fixture(scope="module")
def origin(served: Path) -> Iterator[HTTPOrigin]:
    """One origin for the module (stopping one takes ~0.5 s); every test has its own cache.

    Tests compare ``bytes_sent`` before and after, never against zero.
    """
    with HTTPOrigin(served) as server:
        yield server


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """``plain/`` publishes no manifest: cut it into 256 KiB pieces, so it has many."""
    monkeypatch.setenv("PAGEFAULT_CACHE_PIECE_SIZE", "256KiB")


def cache_json(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``pagefault cache ARGS --json``: its exit code and its one JSON object."""
    result = runner.invoke(app, ["cache", *args, "--json"])
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.output
    return result.exit_code, json.loads(lines[0])


def ok(*args: str) -> dict[str, Any]:
    code, payload = cache_json(*args)
    assert code == 0, payload
    return payload


def plain_bytes(served: Path) -> int:
    return (served / "plain" / "model.safetensors").stat().st_size


def published_bytes(served: Path) -> int:
    return sum(p.stat().st_size for p in (served / "published").glob("*.safetensors"))


def plain_pieces(served: Path) -> int:
    return piece_count(plain_bytes(served), PIECE)


def piece_files(tier_root: Path) -> list[Path]:
    return sorted((tier_root / "pieces").glob("*/*"))


def tiers_by_name() -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in ok("info")["tiers"]}


def digests(uri: str) -> list[str]:
    """The SHA-256 of each piece of a single-file URI, as the catalog records them."""
    node = NodeCache()
    record = node.catalog.record(uri)
    assert record is not None
    (file,) = record.files
    found = node.catalog.pieces(file.key, piece_count(file.size, record.piece_size))
    assert all(found), found
    return [sha for sha in found if sha]


def assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name].view(-1).view(torch.uint8), tensor.view(-1).view(torch.uint8))


def dead_pid() -> int:
    pid = 999_999
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


@pytest.mark.parametrize(
    ("name", "size", "verified"),
    [("plain", plain_bytes, False), ("published", published_bytes, True)],
    ids=["plain", "published"],
)
def test_prefetch_then_load_downloads_nothing(
    origin: HTTPOrigin, served: Path, name: str, size: Any, verified: bool
) -> None:
    uri = f"{origin.url}/{name}"
    model_bytes = size(served)
    got = ok("prefetch", uri)
    assert got["uri"] == uri and got["bytes"] == model_bytes
    assert got["cached"] == {"ram": model_bytes, "disk": model_bytes}
    assert got["verified"] is verified and got["pinned"] is False
    assert origin.bytes_sent >= model_bytes

    sent = origin.bytes_sent
    loaded = runner.invoke(app, ["load", uri, "--json"])
    assert loaded.exit_code == 0, loaded.output
    stats = json.loads(loaded.stdout)
    assert stats["bytes_by_source"]["origin"] == 0 and stats["corrupt_pieces"] == 0
    assert stats["bytes_by_source"]["ram"] >= model_bytes
    assert origin.bytes_sent == sent  # HEADs only: no body byte came from the origin


def test_ls_and_info_json_show_the_entry_and_tier_usage(
    origin: HTTPOrigin, served: Path, isolated_cache: Path
) -> None:
    assert ok("ls") == {"models": []}
    uri = origin.url + "/plain"
    ok("prefetch", uri)
    size, pieces = plain_bytes(served), plain_pieces(served)

    (listed,) = ok("ls")["models"]
    assert listed["uri"] == uri and listed["bytes"] == size and listed["files"] == 1
    assert listed["cached"] == {"ram": size, "disk": size}
    assert listed["pinned"] is False and listed["verified"] is False
    assert ok("info", uri) == listed

    info = ok("info")
    assert info["config"] == str(isolated_cache / "absent.toml") and info["offline"] is False
    assert [t["name"] for t in info["tiers"]] == ["ram", "disk"]
    for tier in info["tiers"]:
        root = isolated_cache / tier["name"]
        assert tier["root"] == str(root)
        assert tier["pieces"] == pieces == len(piece_files(root))
        assert tier["used"] == size + pieces * TRAILER
        assert tier["capacity"] > tier["used"]


def test_ls_and_info_human_output(origin: HTTPOrigin, served: Path) -> None:
    uri = origin.url + "/plain"
    empty = runner.invoke(app, ["cache", "ls"])
    assert empty.exit_code == 0 and empty.stdout.startswith("no cached models (ram tier ")
    ok("prefetch", uri, "--pin")

    listed = runner.invoke(app, ["cache", "ls"])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if uri in line)
    assert f"{plain_bytes(served):,}" in row and row.count("100%") == 2 and "yes" in row
    header = next(line for line in listed.stdout.splitlines() if "uri" in line)
    assert "ram" in header and "disk" in header and "pinned" in header

    tiers = runner.invoke(app, ["cache", "info"])
    assert tiers.exit_code == 0, tiers.output
    assert "config file:" in tiers.stdout
    pieces = plain_pieces(served)
    assert tiers.stdout.count(f"({pieces} pieces)") == 2
    assert " ram: " in tiers.stdout and "disk: " in tiers.stdout
    assert "PAGEFAULT_CACHE_RAM_CAPACITY=0" in tiers.stdout  # what the RAM tier costs

    one = runner.invoke(app, ["cache", "info", uri])
    assert one.exit_code == 0, one.output
    assert f"uri: {uri}" in one.stdout and f"bytes: {plain_bytes(served):,}" in one.stdout
    assert "pinned: yes" in one.stdout and "updated: 20" in one.stdout  # a date, not a stamp


def test_pinned_entry_is_not_evicted_until_unpinned(
    origin: HTTPOrigin, served: Path, isolated_cache: Path
) -> None:
    uri = origin.url + "/plain"
    ok("prefetch", uri)
    assert ok("pin", uri) == {"uri": uri, "pinned": True}
    assert ok("ls")["models"][0]["pinned"] is True
    before = tiers_by_name()

    code, refused = cache_json("evict", uri)
    assert code == 2 and refused["type"] == "CacheError" and "pinned" in refused["error"]
    assert tiers_by_name() == before  # nothing was removed
    assert ok("info", uri)["cached"] == {"ram": plain_bytes(served), "disk": plain_bytes(served)}

    assert ok("unpin", uri) == {"uri": uri, "pinned": False}
    assert ok("ls")["models"][0]["pinned"] is False
    freed = ok("evict", uri)
    assert freed == {"uri": uri, "freed_bytes": before["ram"]["used"] + before["disk"]["used"]}
    assert ok("ls") == {"models": []}
    assert {(t["used"], t["pieces"]) for t in ok("info")["tiers"]} == {(0, 0)}
    assert piece_files(isolated_cache / "ram") == piece_files(isolated_cache / "disk") == []
    code, gone = cache_json("info", uri)
    assert code == 2 and gone["type"] == "NotFound"


@pytest.mark.parametrize("verb", ["evict", "pin", "unpin", "info", "verify"])
def test_unknown_uri_is_not_found(verb: str) -> None:
    uri = "http://127.0.0.1:9/never-prefetched"
    code, payload = cache_json(verb, uri)
    assert code == 2 and payload["type"] == "NotFound" and uri in payload["error"]
    human = runner.invoke(app, ["cache", verb, uri])
    assert human.exit_code == 2 and "NotFound" in human.output


def test_prefetch_of_a_missing_model_fails_cleanly(origin: HTTPOrigin) -> None:
    code, payload = cache_json("prefetch", origin.url + "/missing")
    assert code == 2 and payload["type"] == "NotFound"
    assert ok("ls") == {"models": []}


def test_prefetch_pin_pins(origin: HTTPOrigin, served: Path) -> None:
    uri = origin.url + "/published"
    got = ok("prefetch", uri, "--pin")
    assert got["pinned"] is True and got["cached"]["ram"] == published_bytes(served)
    assert ok("info", uri)["pinned"] is True
    code, refused = cache_json("evict", uri)
    assert code == 2 and refused["type"] == "CacheError"


def test_same_bytes_under_two_uris_are_stored_once(origin: HTTPOrigin, served: Path) -> None:
    directory = origin.url + "/published"
    index = directory + "/model.safetensors.index.json"
    size = published_bytes(served)
    ok("prefetch", directory)
    first = tiers_by_name()

    sent = origin.bytes_sent
    again = ok("prefetch", index)
    assert again["bytes"] == size and again["cached"] == {"ram": size, "disk": size}
    assert tiers_by_name() == first  # not one more piece in any tier
    assert origin.bytes_sent - sent < PIECE  # the index and the manifest, no shard bytes
    assert {m["uri"] for m in ok("ls")["models"]} == {directory, index}

    # evicting one keeps the bytes the other still names; evicting both frees them all
    assert ok("evict", index)["freed_bytes"] == 0
    assert ok("info", directory)["cached"] == {"ram": size, "disk": size}
    assert ok("evict", directory)["freed_bytes"] == first["ram"]["used"] + first["disk"]["used"]
    assert {t["pieces"] for t in ok("info")["tiers"]} == {0}


def test_verify_drops_a_corrupt_ram_piece_and_the_next_load_heals_it(
    origin: HTTPOrigin, served: Path, isolated_cache: Path
) -> None:
    uri = origin.url + "/plain"
    ok("prefetch", uri)
    pieces = plain_pieces(served)
    assert ok("verify") == {"checked": 2 * pieces, "corrupt": []}

    sha = digests(uri)[pieces // 2]  # a piece of tensor data, not of the header
    ram_copy = isolated_cache / "ram" / "pieces" / sha[:2] / sha
    flip_byte(ram_copy, 1000)
    code, found = cache_json("verify")
    assert code == 1 and found == {"checked": 2 * pieces, "corrupt": [f"ram:{sha}"]}
    assert not ram_copy.exists()
    assert ok("info", uri)["cached"] == {
        "ram": plain_bytes(served) - PIECE,
        "disk": plain_bytes(served),
    }

    sent = origin.bytes_sent
    stream = pagefault.stream(uri)
    got = dict(stream)
    assert_same_tensors(got, pagefault.load(served / "plain", mmap=False))
    assert stream.stats.bytes_by_source["origin"] == 0  # the disk tier still had a good copy
    assert stream.stats.bytes_by_source["disk"] == PIECE  # only that piece came from below RAM
    assert origin.bytes_sent == sent
    assert ram_copy.is_file()  # promoted back to RAM
    assert ok("verify", uri) == {"checked": 2 * pieces, "corrupt": []}


def test_verify_drops_a_piece_corrupt_in_every_tier_and_the_load_refetches_only_it(
    origin: HTTPOrigin, served: Path, isolated_cache: Path
) -> None:
    uri = origin.url + "/plain"
    ok("prefetch", uri)
    sha = digests(uri)[3]
    for tier in ("ram", "disk"):
        flip_byte(isolated_cache / tier / "pieces" / sha[:2] / sha, PIECE - 1)
    code, found = cache_json("verify", uri)
    assert code == 1 and found["corrupt"] == [f"ram:{sha}", f"disk:{sha}"]

    sent = origin.bytes_sent
    stream = pagefault.stream(uri, mmap=False)
    got = dict(stream)
    assert_same_tensors(got, pagefault.load(served / "plain", mmap=False))
    assert (
        stream.stats.bytes_by_source["origin"] == PIECE
        and stream.stats.bytes_by_source["disk"] == 0
    )
    assert origin.bytes_sent - sent == PIECE
    assert ok("verify") == {"checked": 2 * plain_pieces(served), "corrupt": []}


def test_a_load_replaces_a_corrupt_ram_piece_it_finds(
    origin: HTTPOrigin, served: Path, isolated_cache: Path
) -> None:
    uri = origin.url + "/plain"
    ok("prefetch", uri)
    sha = digests(uri)[-2]
    flip_byte(isolated_cache / "ram" / "pieces" / sha[:2] / sha, 7)

    sent = origin.bytes_sent
    stream = pagefault.stream(uri)  # mapped: the RAM piece is mapped, then checked
    got = dict(stream)
    assert_same_tensors(got, pagefault.load(served / "plain", mmap=False))
    assert stream.stats.corrupt_pieces == 1
    # the one piece came again, from the disk tier or the origin; nothing else did
    assert stream.stats.bytes_by_source["origin"] + stream.stats.bytes_by_source["disk"] == PIECE
    assert origin.bytes_sent - sent <= PIECE
    assert ok("verify") == {"checked": 2 * plain_pieces(served), "corrupt": []}


def test_gc_removes_what_dead_processes_left(isolated_cache: Path) -> None:
    pid = dead_pid()
    stale = [
        isolated_cache / tier / "tmp" / f"abcdef0123456789.{pid}.deadbeef.tmp"
        for tier in ("ram", "disk")
    ]
    live = isolated_cache / "ram" / "tmp" / f"0123456789abcdef.{os.getpid()}.cafebabe.tmp"
    locks = isolated_cache / "ram" / "locks"
    for path in [*stale, live]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial piece")
    locks.mkdir(parents=True)
    leftover = locks / ("ab" * 32)
    leftover.touch()

    with FileLock(locks / ("cd" * 32)) as held:  # a lock some process holds right now
        report = ok("gc")
        assert held.path.exists()
    assert report["temp_files"] == 2 and report["lock_files"] == 1
    assert report["forgotten_files"] == 0
    assert [t["name"] for t in report["tiers"]] == ["ram", "disk"]
    assert not any(p.exists() for p in [*stale, leftover])
    assert live.exists()  # its writer (this process) is alive

    again = ok("gc")
    assert (again["temp_files"], again["lock_files"]) == (0, 0)


def test_gc_forgets_files_no_uri_names(served: Path) -> None:
    with HTTPOrigin(served) as own:  # its ETags change: not the shared origin
        uri = own.url + "/plain"
        ok("prefetch", uri)
        own.change_etag("/plain/model.safetensors")  # a new version: a new file key
        ok("prefetch", uri)
    report = ok("gc")
    assert report["forgotten_files"] == 1
    assert ok("info", uri)["cached"]["ram"] == plain_bytes(served)
    assert ok("gc")["forgotten_files"] == 0


def test_gc_enforces_capacity_but_keeps_pinned_pieces(
    origin: HTTPOrigin, served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned, other = origin.url + "/published", origin.url + "/plain"
    ok("prefetch", pinned, "--pin")
    ok("prefetch", other)
    capacity = published_bytes(served) + 4 * PIECE
    monkeypatch.setenv("PAGEFAULT_CACHE_RAM_CAPACITY", str(capacity))

    ram = next(t for t in ok("gc")["tiers"] if t["name"] == "ram")
    assert ram["capacity"] == capacity and ram["used"] <= capacity
    assert ok("info", pinned)["cached"]["ram"] == published_bytes(served)
    rest = ok("info", other)["cached"]
    assert rest["ram"] < plain_bytes(served) and rest["disk"] == plain_bytes(served)


def test_gc_removes_a_pin_its_writer_died_writing(origin: HTTPOrigin, isolated_cache: Path) -> None:
    uri = origin.url + "/plain"
    ok("prefetch", uri)
    leftover = isolated_cache / "disk" / "pins" / f".{uri_key(uri)}.{dead_pid()}.deadbeef.tmp"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_text(uri)  # `write_atomic` killed between the write and the rename
    assert ok("gc")["temp_files"] == 1
    assert not leftover.exists()
    assert ok("info", uri)["pinned"] is False
    assert ok("evict", uri)["freed_bytes"] > 0


def test_a_half_written_pin_does_not_pin(origin: HTTPOrigin, isolated_cache: Path) -> None:
    uri = origin.url + "/plain"
    ok("prefetch", uri)
    leftover = isolated_cache / "disk" / "pins" / f".{uri_key(uri)}.{dead_pid()}.deadbeef.tmp"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_text(uri)
    ok("unpin", uri)
    assert ok("info", uri)["pinned"] is False
