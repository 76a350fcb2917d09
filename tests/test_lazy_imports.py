"""Processes that never load a tensor (agent, coordinator, cache and remote commands) must not
import torch: it costs ~2.5 s of CPU per process, 40 s for a 16-agent testbed."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pagefault


def test_cli_and_swarm_start_without_torch() -> None:
    probe = (
        "import sys, pagefault, pagefault.api, pagefault.pipeline, pagefault.cli,"
        " pagefault.swarm.agent, pagefault.swarm.coordinator;"
        " print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_public_names_resolve_on_first_use() -> None:
    for name in pagefault.__all__:
        assert getattr(pagefault, name) is not None, name
    assert set(pagefault.__all__) <= set(dir(pagefault))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        pagefault.no_such_name  # noqa: B018
