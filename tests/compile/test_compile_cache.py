"""``pagefault.compile_cache`` with a real ``torch.compile`` in fresh processes: a cold
compile publishes, a fresh node loads it from the store, a corrupt bundle is skipped
with a warning and compiled from scratch, outputs identical every time."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, torch, pagefault
def f(x):
    return (x.sin() * x.cos() + x).sum(dim=-1)
with pagefault.compile_cache("test-fn", store=sys.argv[1]) as cached:
    out = torch.compile(f)(torch.linspace(0, 1, 64).reshape(8, 8))
print(json.dumps({"out": out.tolist(), "stats": cached.stats.to_dict()}))
"""


def run(store: str, node: Path, inductor: Path) -> dict:
    env = {
        **os.environ,
        "PAGEFAULT_CACHE_DIR": str(node),
        "PAGEFAULT_CACHE_RAM_DIR": "off",
        "TORCHINDUCTOR_CACHE_DIR": str(inductor),
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, store],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_cold_publish_warm_load_and_a_corrupt_bundle(tmp_path: Path) -> None:
    store, node = f"file://{tmp_path / 'store'}", tmp_path / "node"
    cold = run(store, node, tmp_path / "i1")
    assert cold["stats"]["hit"] is None
    assert cold["stats"]["published"] == ["node", store] and cold["stats"]["published_bytes"] > 0

    shutil.rmtree(node)  # a fresh node: only the shared store has the artifacts
    warm = run(store, node, tmp_path / "i2")
    assert warm["stats"]["hit"] == store and warm["out"] == cold["out"]
    assert not warm["stats"]["published"]  # nothing new to publish
    if cold["stats"]["vec_isa"] == "probed":  # every ISA the CPU claims builds here
        assert warm["stats"]["vec_isa"] == "recorded"  # so the warm process skips the probe

    shutil.rmtree(node)
    key = cold["stats"]["key"]
    bundle = next((tmp_path / "store" / key).glob("*.tar"))
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bundle.write_bytes(bytes(data))
    healed = run(store, node, tmp_path / "i3")
    assert healed["stats"]["hit"] is None and healed["out"] == cold["out"]
    assert any("do not match their digest" in s for s in healed["stats"]["skipped"])
    assert "compile cache: skipping" in healed["stderr"]  # the warning
