"""``pagefault.metrics``: every finished load and save is counted, and ``serve`` exposes
the counters to a real Prometheus scrape over HTTP."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import pagefault
import pagefault.metrics
from pagefault.testing.ports import free_port


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_loads_and_saves_are_counted_and_served(sharded_checkpoint: Path, tmp_path: Path) -> None:
    before = _value("pagefault_load_bytes_total", source="local")
    loads = _value("pagefault_loads_total", mode="private", pages="small-pages", device="cpu")
    loads += _value("pagefault_loads_total", mode="private", pages="huge-pages", device="cpu")
    tensors = pagefault.load(sharded_checkpoint, mmap=False)
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    assert _value("pagefault_load_bytes_total", source="local") - before == size
    after = _value("pagefault_loads_total", mode="private", pages="small-pages", device="cpu")
    after += _value("pagefault_loads_total", mode="private", pages="huge-pages", device="cpu")
    assert after == loads + 1
    assert _value("pagefault_load_stage_seconds_total", stage="read") > 0

    saved = _value("pagefault_save_bytes_total")
    pagefault.save(tensors, tmp_path / "saved").wait()
    assert _value("pagefault_save_bytes_total") - saved >= size  # tensors plus headers

    port = free_port()
    pagefault.metrics.serve(port)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"pagefault_load_bytes", "pagefault_loads", "pagefault_save_bytes"} <= names
