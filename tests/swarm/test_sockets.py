"""The agent's cap on unsent socket bytes, against a stand-in sysctl file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pagefault.swarm.sockets import cap_unsent_bytes


def sysctl(tmp_path: Path, value: int) -> Path:
    path = tmp_path / "tcp_notsent_lowat"
    path.write_text(f"{value}\n")
    return path


def test_lowers_an_unlimited_setting(tmp_path: Path) -> None:
    path = sysctl(tmp_path, 4294967295)
    assert cap_unsent_bytes(16384, path) == 16384
    assert path.read_text() == "16384\n"


@pytest.mark.parametrize(("current", "limit"), [(8192, 16384), (4294967295, 0)])
def test_leaves_a_lower_setting_or_a_zero_limit_alone(
    tmp_path: Path, current: int, limit: int
) -> None:
    path = sysctl(tmp_path, current)
    assert cap_unsent_bytes(limit, path) == current
    assert int(path.read_text()) == current


READ_ONLY_SYSCTL = Path("/proc/sys/kernel/ngroups_max")  # mode 0444: even root cannot write


@pytest.mark.skipif(not READ_ONLY_SYSCTL.exists(), reason="needs Linux /proc/sys")
def test_unwritable_setting_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    current = int(READ_ONLY_SYSCTL.read_text())
    with caplog.at_level(logging.WARNING, "pagefault.agent"):
        assert cap_unsent_bytes(1, READ_ONLY_SYSCTL) == current
    assert "sysctl -w net.ipv4.tcp_notsent_lowat=1" in caplog.text
    assert int(READ_ONLY_SYSCTL.read_text()) == current


def test_missing_setting_means_none(tmp_path: Path) -> None:
    assert cap_unsent_bytes(16384, tmp_path / "absent") is None
