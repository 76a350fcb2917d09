"""Damage at rest and full filesystems: detected, dropped, refetched; loads still succeed."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import pagefault
from pagefault.cache import NodeCache, manage
from pagefault.testing import HTTPOrigin

from ..helpers import flip_byte
from ..remote.conftest import assert_same_tensors, reference
from .conftest import PIECE, cache_config


def piece_files(node: NodeCache, tier: int) -> list[Path]:
    return sorted(node.tiers[tier].path(p.sha) for p in node.tiers[tier].scan())


@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("tier", [0, 1], ids=["ram", "disk"])
def test_a_flipped_bit_is_caught_dropped_and_refetched(
    origin: HTTPOrigin, served: Path, node: NodeCache, tier: int, mmap: bool
) -> None:
    url = origin.url + "/published"
    pagefault.load(url, cache=node)
    if tier == 1:  # only the disk copy is left, and it is damaged
        for piece in node.tiers[0].scan():
            node.tiers[0].drop(piece.sha)
    damaged = piece_files(node, tier)[3]
    flip_byte(damaged, 1000)
    sent = origin.bytes_sent
    stream = pagefault.stream(url, cache=node, mmap=mmap)
    assert_same_tensors(dict(stream), reference(served / "published"))
    assert stream.stats.corrupt_pieces == 1
    if tier == 0:  # the disk tier's good copy replaces it
        assert origin.bytes_sent == sent
    else:
        assert 0 < origin.bytes_sent - sent <= PIECE, "only the damaged piece is fetched again"
    assert not manage.verify(node).corrupt, "the refetched piece replaced the damaged one"


def test_a_truncated_piece_file_is_not_an_entry(
    origin: HTTPOrigin, served: Path, node: NodeCache
) -> None:
    url = origin.url + "/plain"
    pagefault.load(url, cache=node)
    victim = piece_files(node, 0)[0]
    victim.write_bytes(victim.read_bytes()[:-100])
    got = pagefault.load(url, cache=node, mmap=False)
    assert_same_tensors(got, reference(served / "plain"))


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]
    done = subprocess.run(command, check=False, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_tmpfs_bypasses_the_ram_tier(
    origin: HTTPOrigin, served: Path, tmp_path: Path, tiny_tmpfs: Path
) -> None:
    # the configured capacity says 64 MiB; the filesystem runs out at 1 MiB (ENOSPC)
    node = NodeCache(cache_config(tmp_path / "cache", ram_dir=tiny_tmpfs, ram_capacity=64 << 20))
    url = origin.url + "/published"
    got = pagefault.load(url, cache=node)
    assert_same_tensors(got, reference(served / "published"))
    assert not list(tiny_tmpfs.rglob("*.tmp")), "no temp file is left on the full tmpfs"
    assert not manage.verify(node).corrupt
    assert 0 < len(node.tiers[0].scan()) < len(node.tiers[1].scan())
    sent = origin.bytes_sent
    assert_same_tensors(pagefault.load(url, cache=node), reference(served / "published"))
    assert origin.bytes_sent == sent, "what fit in RAM, plus the disk tier, serves it all"


def test_a_cache_that_cannot_be_written_does_not_fail_the_load(
    origin: HTTPOrigin, served: Path, tmp_path: Path, tiny_tmpfs: Path
) -> None:
    node = NodeCache(
        cache_config(tmp_path / "cache", ram_dir=tiny_tmpfs, ram_capacity=64 << 20, disk_capacity=0)
    )
    got = pagefault.load(origin.url + "/plain", cache=node)  # 2 MiB model, 1 MiB tmpfs
    assert_same_tensors(got, reference(served / "plain"))
    assert not list(tiny_tmpfs.rglob("*.tmp"))


def test_an_unusable_cache_directory_does_not_fail_the_load(
    origin: HTTPOrigin, served: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directories should go")
    node = NodeCache(cache_config(tmp_path, disk_dir=blocker / "disk", ram_dir=blocker / "ram"))
    for _ in range(2):
        got = pagefault.load(origin.url + "/plain", cache=node)
        assert_same_tensors(got, reference(served / "plain"))


def test_an_etag_change_mid_load_fails_and_mixes_nothing_into_the_cache(
    served: Path, node: NodeCache
) -> None:
    shard = sorted((served / "published").glob("*.safetensors"))[-1]
    with HTTPOrigin(served, bandwidth=2e6) as origin:
        url = origin.url + "/published"
        stream = pagefault.stream(url, cache=node, threads=1, request_size=PIECE)
        next(iter(stream))
        origin.change_etag(f"/published/{shard.name}")
        with pytest.raises(pagefault.errors.IntegrityError, match="changed during the load"):
            dict(stream)
        stream.close()
        assert manage.verify(node).corrupt == []  # every stored piece is the one it is named by
        again = pagefault.stream(url, cache=node)  # the new version, from the origin afresh
        assert_same_tensors(dict(again), reference(served / "published"))
