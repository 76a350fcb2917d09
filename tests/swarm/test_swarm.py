"""The swarm end to end on a namespace testbed: real agents, coordinator, Redis, origin.

Small model (24 MiB, 1 MiB pieces) and slow links so faults land mid-transfer."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pagefault.api import make_piece_manifest, write_piece_manifest
from pagefault.manifest import MANIFEST_NAME, PieceManifest
from pagefault.swarm.credentials import SwarmCA
from pagefault.swarm.sockets import NOTSENT_LOWAT, NOTSENT_LOWAT_SYSCTL
from pagefault.swarm.torrent import build_torrent
from pagefault.synthetic import SyntheticConfig, write_synthetic_checkpoint
from pagefault.testing.netns import Host, available
from pagefault.testing.swarmbed import (
    API_PORT,
    PEER_PORT,
    FleetConfig,
    SwarmTestbed,
    holds_model,
    load_and_digest,
)
from tests.polling import eventually

pytestmark = pytest.mark.skipif(
    available() is not None or shutil.which("redis-server") is None,
    reason=available() or "redis-server is not installed",
)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("swarm-model") / "model"
    entry = write_synthetic_checkpoint(root, SyntheticConfig(24 << 20, shards=2))
    write_piece_manifest(make_piece_manifest(entry, piece_size=1 << 20), root / MANIFEST_NAME)
    return root


def manifest_of(model: Path) -> PieceManifest:
    return PieceManifest.from_json((model / MANIFEST_NAME).read_bytes(), name="m")


def check_identical(model: Path, result: dict[str, Any], nodes: list[str]) -> None:
    for name in nodes:
        node = result["nodes"][name]
        assert holds_model(model, node), (name, node.get("state"), node.get("error"))


@pytest.mark.parametrize("stripes", [1, 2], ids=["chain", "two-trees"])
def test_fleet_gets_every_byte_once_from_the_origin(
    model: Path, stripes: int, tmp_path: Path
) -> None:
    size = manifest_of(model).total_bytes
    config = FleetConfig(nodes=3, node_mbit=100, stripes=stripes, logs_dir=tmp_path / "logs")
    with SwarmTestbed(config, model) as bed:
        result = bed.drive()
        check_identical(model, result, ["n1", "n2", "n3"])
        lowat = [node.run(["cat", NOTSENT_LOWAT_SYSCTL], capture_output=True) for node in bed.nodes]
    assert [int(done.stdout) for done in lowat] == [NOTSENT_LOWAT] * 3  # each agent capped it
    assert "lowered" in (tmp_path / "logs" / "agent-n1.log").read_text()  # logs kept at close
    assert result["origin_bytes"] <= 1.05 * size, _why_origin(result)
    assert max(n["uploaded"] for n in result["nodes"].values()) <= 1.5 * size
    assert all(n["first_piece_s"] < n["complete_s"] for n in result["nodes"].values())


def test_unreachable_coordinator_means_direct_from_the_origin(model: Path) -> None:
    size = manifest_of(model).total_bytes
    config = FleetConfig(nodes=2, node_mbit=100, coordinator=False)
    with SwarmTestbed(config, model) as bed:
        result = bed.drive()
        check_identical(model, result, ["n1", "n2"])
        metrics = _scrape(bed, bed.nodes[0])
    for node in result["nodes"].values():
        assert node["from_origin"] == size
        assert any("the coordinator is unreachable" in r for r in node["reasons"])
    swarm = result["nodes"]["n1"]["id"]
    assert metrics[("pagefault_swarm_received_bytes_total", swarm, "origin")] == size
    assert metrics[("pagefault_swarm_received_bytes_total", swarm, "peers")] == 0
    pieces = result["nodes"]["n1"]["pieces"]
    assert metrics[("pagefault_swarm_pieces", swarm, "held")] == pieces
    assert metrics[("pagefault_swarm_piece_wait_seconds_count", swarm, "")] == pieces
    assert ("pagefault_save_bytes_total", "", "") in metrics  # pagefault.metrics rides along


PAGEFAULT = [sys.executable, "-m", "pagefault"]


def test_a_store_refusing_the_coordinator_is_named_as_the_cause(model: Path) -> None:
    """Redis refuses the coordinator (a password it lacks): agents say so, not "stalled"."""
    config = FleetConfig(nodes=2, node_mbit=100, stall_s=3, redis_args=("--requirepass", "x"))
    with SwarmTestbed(config, model) as bed:
        health = bed.ctl.run(
            [*PAGEFAULT, "swarm", "health", "--coordinator", bed.coordinator_url, "--json"],
            capture_output=True,
        )
        result = bed.drive()
        check_identical(model, result, ["n1", "n2"])
        log = bed.log("agent-n1")
    cause = "coordinator unavailable: "
    for node in result["nodes"].values():
        assert "coordination store unavailable" in (node["coordinator_error"] or "")
        assert any(r.startswith(f"origin fallback: {cause}") for r in node["reasons"]), node
    assert cause in log and "coordination store unavailable" in log
    assert health.returncode == 2 and b"coordination store unavailable" in health.stdout


def _scrape(bed: SwarmTestbed, node: Host) -> dict[tuple[str, str, str], float]:
    """The agent's Prometheus samples, fetched from inside the testbed:
    (name, model, source or kind) -> value."""
    url = f"http://{node.address}:{API_PORT}/metrics"
    probe = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
    argv = [sys.executable, "-c", probe, url]
    page = bed.ctl.run(argv, capture_output=True, text=True, check=True).stdout
    return {
        (
            s.name,
            s.labels.get("model", ""),
            s.labels.get("source", s.labels.get("kind", "")),
        ): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def test_peer_without_swarm_certificate_gets_nothing(model: Path, tmp_path: Path) -> None:
    with SwarmTestbed(FleetConfig(nodes=1, node_mbit=100), model) as bed:
        check_identical(model, bed.drive(), ["n1"])
        ca = (bed.work / "ca" / "swarm-ca.crt").read_bytes()
        torrent = tmp_path / "model.torrent"
        torrent.write_bytes(build_torrent(manifest_of(model), ca))
        intruder = bed.bed.add_host("intruder")
        # Knows the torrent and the CA certificate (both public), holds a certificate of its
        # own CA: libtorrent on n1 must refuse the TLS handshake.
        script = _INTRUDER.format(
            torrent=torrent,
            save=tmp_path / "dl",
            peer=f"{bed.nodes[0].address}:{PEER_PORT}",
            cert=tmp_path / "c.pem",
            key=tmp_path / "k.pem",
        )
        own = SwarmCA.create("intruder").issue("intruder")
        (tmp_path / "c.pem").write_bytes(own.cert_pem)
        (tmp_path / "k.pem").write_bytes(own.key_pem)
        done = intruder.run(["python", "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    refused, downloaded = done.stdout.decode().split()[-2:]
    assert (refused, downloaded) == ("3", "0"), done.stdout.decode()


_INTRUDER = """
import time, libtorrent as lt
s = lt.session({{"listen_interfaces": "0.0.0.0:0s", "enable_dht": False,
                "alert_mask": lt.alert.category_t.all_categories}})
p = lt.add_torrent_params(); p.ti = lt.torrent_info("{torrent}"); p.save_path = "{save}"
h = s.add_torrent(p)
h.set_ssl_certificate("{cert}", "{key}", "", "")
host, port = "{peer}".rsplit(":", 1)
refused, deadline = 0, time.monotonic() + 30
while refused < 3 and time.monotonic() < deadline:  # three handshakes, each refused
    h.connect_peer((host, int(port)))
    while time.monotonic() < deadline:  # wait for this attempt's end, not a fixed time
        s.wait_for_alert(1000)
        ended = [a for a in s.pop_alerts()
                 if isinstance(a, (lt.peer_disconnected_alert, lt.peer_error_alert))]
        if ended:
            refused += 1
            break
print(refused, h.status().total_payload_download)
"""


def _fetcher(bed: SwarmTestbed) -> str:
    for node in bed.nodes:
        if "designated fetcher" in bed.log(f"agent-{node.name}"):
            return node.name
    raise AssertionError("no node became the fetcher")


def _drive_in_background(bed: SwarmTestbed) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(bed.drive(timeout=120)))
    thread.start()
    return thread, out


def _why_origin(result: dict[str, Any]) -> dict[str, Any]:
    """Each node's own account of why it read from the origin: what a failed bound shows."""
    return {
        name: (node.get("from_origin"), node.get("reasons"))
        for name, node in result["nodes"].items()
    }


def test_killing_a_quarter_of_the_agents_including_the_fetcher(model: Path) -> None:
    size = manifest_of(model).total_bytes
    with SwarmTestbed(FleetConfig(nodes=4, node_mbit=40, stall_s=4), model) as bed:
        thread, result = _drive_in_background(bed)
        pieces = manifest_of(model).total_bytes // (1 << 20)
        reached = eventually(
            lambda: max(bed.pieces_held().values(), default=0) >= pieces // 4, 30, 0.1
        )
        assert reached, "condition not reached"
        victim = _fetcher(bed)  # mid-transfer: a quarter of the pieces are somewhere
        bed.kill_agent(next(n for n in bed.nodes if n.name == victim))
        thread.join()
        survivors = [n.name for n in bed.nodes if n.name != victim]
        check_identical(model, result, survivors)
    assert result["origin_bytes"] <= 1.25 * size, _why_origin(result)


def test_redis_restart_mid_run(model: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    config = FleetConfig(nodes=3, node_mbit=40, stall_s=6, logs_dir=logs)
    with SwarmTestbed(config, model) as bed:
        thread, result = _drive_in_background(bed)
        reached = eventually(
            lambda: any("designated" in bed.log(f"agent-{n.name}") for n in bed.nodes), 30, 0.1
        )
        assert reached, "condition not reached"
        bed.redis.kill()
        bed.redis.wait()
        everything = 3 * (manifest_of(model).total_bytes >> 20)
        before = sum(bed.pieces_held().values())
        reached = eventually(
            lambda: min(everything, before + 3) <= sum(bed.pieces_held().values()), 30, 0.1
        )
        assert reached, "condition not reached"
        bed.start_redis()  # after pieces moved with Redis down (or all were already there)
        thread.join()
        check_identical(model, result, ["n1", "n2", "n3"])
    roles = [  # who was told to fetch when: what a failure here needs explained
        f"{path.stem}: {line[11:23]} {line.split(': ', 1)[-1]}"
        for path in sorted(logs.glob("agent-*.log"))
        for line in path.read_text().splitlines()
        if "designated" in line or "fed by" in line or "unavailable" in line
    ]
    why = (_why_origin(result), roles)
    assert result["origin_bytes"] <= 1.25 * manifest_of(model).total_bytes, why


def test_corrupt_peer_is_banned_and_everyone_completes(model: Path) -> None:
    with SwarmTestbed(FleetConfig(nodes=3, node_mbit=100, stall_s=4), model) as bed:
        first = bed.drive(nodes=bed.nodes[:1])
        check_identical(model, first, ["n1"])
        for entry in first["nodes"]["n1"]["files"]:  # n1 now serves bad bytes in every piece
            path = Path(entry["path"])
            with path.open("r+b") as f:
                for offset in range(0, entry["size"], 1 << 20):
                    f.seek(offset)
                    byte = f.read(1)
                    f.seek(offset)
                    f.write(bytes([byte[0] ^ 0xFF]))
        rest = bed.drive(nodes=bed.nodes[1:])
        logs = bed.log("agent-n2") + bed.log("agent-n3")
        check_identical(model, rest, ["n2", "n3"])
    assert "banned peer" in logs
    # the ban closed the link on purpose: no node dials the corrupt peer again
    assert "link to upstream n1 closed" not in logs, logs


def test_every_node_loads_through_the_swarm_then_from_its_node_cache(model: Path) -> None:
    """``pagefault.load(uri)`` on each node (its agent and node cache): byte-identical
    tensors, the origin serves the model about once, a second load reads neither the
    origin nor the peers."""
    size = manifest_of(model).total_bytes
    want = load_and_digest(str(model), time.time())["digest"]
    with SwarmTestbed(FleetConfig(nodes=3, node_mbit=100), model) as bed:
        cold = bed.load_all()
        warm = bed.load_all()
    for name, node in cold["nodes"].items():
        assert node["digest"] == want, name
        assert node["bytes_by_source"]["origin"] == 0, (name, node)  # the agents fetched
    # tensors stream out while the swarm runs (the fraction is measured by swarm_bench --load)
    assert all(n["first_tensor_s"] < n["wall_s"] for n in cold["nodes"].values())
    assert cold["origin_bytes"] <= 1.05 * size
    for name, node in warm["nodes"].items():
        assert node["digest"] == want, name
        by_source = node["bytes_by_source"]
        assert by_source["origin"] == by_source["peers"] == 0, (name, by_source)
