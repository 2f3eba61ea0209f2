"""nodeimage.cluster without booting: addresses, recorded state, the acceptance command, bad input."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from nodeimage import cluster, vm
from nodeimage.log import NodeimageError

K8S = {"kubernetes_version": "v1.17.17", "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12"}


def test_node_addresses() -> None:
    assert cluster.node_addresses("192.168.100.0/24", 2) == [
        ("cp", "control-plane", "192.168.100.10/24"),
        ("worker-1", "worker", "192.168.100.11/24"),
        ("worker-2", "worker", "192.168.100.12/24"),
    ]


@pytest.mark.parametrize(
    ("network", "workers", "message"),
    [
        ("192.168.100.0/33", 1, "invalid cluster network '192.168.100.0/33'"),
        ("192.168.100.1/24", 1, "invalid cluster network"),
        ("192.168.100.0/24", 9, "invalid number of workers 9"),
        ("192.168.100.0/24", -1, "invalid number of workers -1"),
        ("192.168.100.0/29", 1, "too small"),
    ],
)
def test_bad_cluster_shape(network: str, workers: int, message: str) -> None:
    with pytest.raises(NodeimageError, match=message.replace(".", r"\.")):
        cluster.node_addresses(network, workers)


def test_missing_image_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(NodeimageError, match="node image not found"):
        cluster.start(cluster="c1", image=tmp_path / "nope.qcow2", workers=1, state_dir=tmp_path / "s", **K8S)
    assert not (tmp_path / "s").exists()


def _state(tmp_path: Path) -> cluster.ClusterState:
    directory = tmp_path / "c1"
    directory.mkdir()
    machine = vm.VM(
        name="cp",
        pid=999_999_999,
        ssh_port=2222,
        serial_log=directory / "s.log",
        overlay=directory / "o.qcow2",
        workdir=directory,
        monitor=directory / "m.sock",
    )
    return cluster.ClusterState(
        cluster="c1",
        directory=directory,
        image=tmp_path / "node.qcow2",
        accel="tcg",
        ssh_key=directory / "ssh" / "id_ed25519",
        net=vm.PrivateNet(hub_port=40000, pid=999_999_998, log=directory / "hub.log"),
        nodes=[cluster.NodeState(name="cp", role="control-plane", ip="192.168.100.10", vm=machine)],
        api_port=6555,
    )


def test_state_round_trip_is_private(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.save()
    assert stat.S_IMODE(state.state_file.stat().st_mode) == 0o600
    loaded = cluster.ClusterState.load(state.directory)
    assert loaded is not None
    assert loaded.nodes[0].vm == state.nodes[0].vm
    assert loaded.net == state.net and loaded.api_port == 6555
    assert loaded.testinfra_hosts() == ["ssh://nodeimage@127.0.0.1:2222"]


def test_down_stops_what_state_records_and_purge_removes_secrets(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.save()
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert not state.state_file.exists()
    assert state.directory.exists()
    cluster.down(cluster="c1", state_dir=tmp_path)  # not up: says so, no error
    cluster.down(cluster="c1", state_dir=tmp_path, purge=True)
    assert not state.directory.exists()


def test_acceptance_command_for_given_hosts(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text("x")
    cmd, env = cluster.acceptance_command(
        hosts=["ssh://ubuntu@10.0.0.5", "ssh://ubuntu@10.0.0.6"], kubeconfig=kubeconfig, standins=True
    )
    assert "--hosts=ssh://ubuntu@10.0.0.5,ssh://ubuntu@10.0.0.6" in cmd
    assert "--booted" in cmd and "--standins" in cmd
    assert env["NODEIMAGE_KUBECONFIG"] == str(kubeconfig.resolve())
    assert "--sudo" in cmd
    assert "--sudo" not in cluster.acceptance_command(hosts=["ssh://root@h"], sudo=False)[0]


def test_acceptance_command_for_an_up_cluster(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.save()
    cmd, env = cluster.acceptance_command(hosts=[], cluster="c1", state_dir=tmp_path)
    assert "--hosts=ssh://nodeimage@127.0.0.1:2222" in cmd
    assert "--sudo" in cmd
    config = next(a for a in cmd if a.startswith("--ssh-config=")).split("=", 1)[1]
    assert "StrictHostKeyChecking no" in Path(config).read_text()
    assert "NODEIMAGE_KUBECONFIG" not in env


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"hosts": []}, "no hosts to test"),
        ({"hosts": ["10.0.0.5"]}, "invalid host '10.0.0.5'"),
        ({"hosts": ["ssh://a@b"], "kubeconfig": Path("/nonexistent/kc")}, "kubeconfig not found"),
        ({"hosts": [], "cluster": "ghost"}, "cluster 'ghost' is not up"),
    ],
)
def test_acceptance_command_bad_input(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(NodeimageError, match=message):
        cluster.acceptance_command(state_dir=tmp_path, **kw)
