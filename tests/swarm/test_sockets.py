"""The agent's short socket queues: its cap on unsent bytes (against a stand-in sysctl
file) and its peer sockets' receive buffer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pagefault.cache import CacheConfig
from pagefault.swarm.agent import Agent
from pagefault.swarm.config import AgentConfig
from pagefault.swarm.sockets import cap_unsent_bytes, receive_buffer_bytes


def sysctl(tmp_path: Path, value: int, name: str = "tcp_notsent_lowat") -> Path:
    """A stand-in for /proc/sys/net/.../``name`` holding ``value``."""
    path = tmp_path / name
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


def test_a_slow_declared_link_gets_a_short_receive_buffer(tmp_path: Path) -> None:
    limit = sysctl(tmp_path, 212992, "rmem_max")
    assert receive_buffer_bytes(40, limit) == 32 * 1024  # the floor: 5 ms would be 25 KB
    assert receive_buffer_bytes(200, limit) == 125_000  # 5 ms of 25 MB/s


def test_an_undeclared_or_fast_link_keeps_autotuning(tmp_path: Path) -> None:
    limit = sysctl(tmp_path, 212992, "rmem_max")
    assert receive_buffer_bytes(0, limit) == 0
    assert receive_buffer_bytes(10_000, limit) == 0  # 6.25 MB: more than rmem_max allows
    assert receive_buffer_bytes(40, tmp_path / "absent") == 0


def test_the_agent_sets_it_on_its_peer_sockets() -> None:
    config = AgentConfig(node="n1", listen="127.0.0.1:0", api="127.0.0.1:0", link_mbit=40)
    agent = Agent(config, CacheConfig(enabled=False))
    settings = agent.session.get_settings()
    assert settings["recv_socket_buffer_size"] == receive_buffer_bytes(40)
