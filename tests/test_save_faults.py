"""SIGKILL a saving process at random points: the previous checkpoint must survive intact.

Checkpoint A is saved first. Then child processes save B over it and are killed with
SIGKILL: most at a random byte of persistence (the child blocks there, so the kill is
guaranteed to land mid-write), a few on a random timer (anywhere, commit included).
After each kill the directory must load byte-identical to A (or, for a timer kill
that came after the commit, to B), verify against its piece manifest, and no staging
leftover may be loadable. A later save clears the leftovers.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from pathlib import Path

import pytest

import pagefault
from pagefault.manifest import MANIFEST_NAME
from tests.checkpoint.fault_child import SHARD_LIMIT, save_and_stop, state_dict
from tests.helpers import same_bytes, verify_manifest

KILLS_MID_WRITE = 20
KILLS_ON_TIMER = 5
SEED_A, SEED_B = 1, 2


@pytest.fixture(scope="module")
def forkserver() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "pagefault", "tests.checkpoint.fault_child"])
    return context


def is_exactly(directory: Path, expected: dict) -> bool:
    loaded = pagefault.load(directory, mmap=False)
    return set(loaded) == set(expected) and all(
        same_bytes(loaded[n], t) for n, t in expected.items()
    )


def loads_partially(directory: Path, a: dict, b: dict) -> bool:
    """True when ``directory`` loads but is neither complete checkpoint."""
    try:
        loaded = pagefault.load(directory, mmap=False)
    except pagefault.PagefaultError:
        return False
    return not any(
        set(loaded) == set(x) and all(same_bytes(loaded[n], t) for n, t in x.items())
        for x in (a, b)
    )


def check_directory(root: Path, a: dict, b: dict, *, allow_b: bool) -> str:
    ckpt = root / "ckpt"
    files = verify_manifest(ckpt)
    assert sorted(os.listdir(ckpt)) == sorted([*files, MANIFEST_NAME])
    state = "A" if is_exactly(ckpt, a) else "B" if allow_b and is_exactly(ckpt, b) else "?"
    assert state != "?", "checkpoint is neither the previous one nor the new one"
    for leftover in root.iterdir():  # staging directories of killed saves
        if leftover.name != "ckpt":
            assert not loads_partially(leftover, a, b), f"{leftover.name} loads half a checkpoint"
    return state


def run_child(context, root: Path, block_at: int | None, delay: float | None) -> None:
    parent, child = context.Pipe()
    process = context.Process(
        target=save_and_stop, args=(str(root / "ckpt"), SEED_B, block_at, child)
    )
    process.start()
    assert parent.poll(60)
    first = parent.recv()
    assert first == "started", first
    if delay is None:
        assert parent.poll(60), "child never reached its kill point"
        assert parent.recv() == "ready"
    else:
        parent.poll(delay)  # a timer kill: wherever the save happens to be
    process.kill()
    process.join(30)
    assert process.exitcode == -9


def test_sigkill_during_persistence_leaves_previous_checkpoint(tmp_path: Path, forkserver) -> None:
    a, b = state_dict(SEED_A), state_dict(SEED_B)
    pagefault.save(a, tmp_path / "ckpt", max_shard_size=SHARD_LIMIT).wait()
    total = sum(p.stat().st_size for p in (tmp_path / "ckpt").glob("*.safetensors"))
    assert len(list((tmp_path / "ckpt").glob("*.safetensors"))) >= 3
    rng = random.Random(6)
    points = sorted(rng.randrange(1, total) for _ in range(KILLS_MID_WRITE))
    for block_at in points:
        run_child(forkserver, tmp_path, block_at, None)
        assert check_directory(tmp_path, a, b, allow_b=False) == "A"
        assert len(list(tmp_path.iterdir())) == 2  # the killed save's staging directory
    for _ in range(KILLS_ON_TIMER):
        run_child(forkserver, tmp_path, None, rng.uniform(0.0, 0.3))
        if check_directory(tmp_path, a, b, allow_b=True) == "B":  # killed after its commit
            pagefault.save(a, tmp_path / "ckpt", max_shard_size=SHARD_LIMIT).wait()
    pagefault.save(a, tmp_path / "ckpt", max_shard_size=SHARD_LIMIT).wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert is_exactly(tmp_path / "ckpt", a)
