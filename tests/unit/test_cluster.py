"""nodeimage.cluster without booting: addresses, recorded state, down and purge, the acceptance command, bad input.

``down`` is tested against real processes that are not VMs: a ``sleep`` whose pid sits in a pid file (it
must survive) and a fake qemu, a copy of the Python interpreter named ``qemu-system-x86_64`` started
with ``-pidfile <that pid file>`` (it must be stopped). GNU sleep itself cannot be the fake: it rejects
the ``-pidfile`` argument.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage import acceptance, cluster, privnet, seed, vm
from nodeimage.log import NodeimageError
from nodeimage.procs import is_running, read_pidfile
from tests.fakeqemu import interpreter_named_qemu, wait_exec

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


def _vm(directory: Path, name: str, pid: int = 999_999_999) -> vm.VM:
    work = directory / "vms" / name
    return vm.VM(
        name=name,
        pid=pid,
        ssh_port=2222,
        serial_log=work / f"{name}.serial.log",
        overlay=work / f"{name}.overlay.qcow2",
        workdir=work,
        monitor=work / f"{name}.monitor.sock",
    )


def _state(tmp_path: Path, pid: int = 999_999_999) -> cluster.ClusterState:
    directory = tmp_path.resolve() / "c1"
    directory.mkdir()
    (directory / "cluster.yaml").write_text("name: c1\n")
    return cluster.ClusterState(
        cluster="c1",
        directory=directory,
        image=tmp_path / "node.qcow2",
        accel="tcg",
        ssh_key=directory / "ssh" / "id_ed25519",
        net=privnet.PrivateNet(hub_port=40000, pid=999_999_998, log=directory / "vms" / "private-net.log"),
        nodes=[cluster.NodeState(name="cp", role="control-plane", ip="192.168.100.10", vm=_vm(directory, "cp", pid))],
        api_port=6555,
    )


@pytest.fixture(scope="module")
def fake_qemu_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the Python interpreter named like qemu: /proc/<pid>/cmdline then reads as a qemu's."""
    return interpreter_named_qemu(tmp_path_factory.mktemp("fakeqemu"))


@pytest.fixture
def spawn() -> Iterator[object]:
    """Start a process and write its pid to a pid file; kill whatever is left at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], pidfile: Path) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_exec(proc.pid, argv[0])
        procs.append(proc)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{proc.pid}\n")
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _fake_qemu(spawn: object, binary: Path, pidfile: Path) -> subprocess.Popen[bytes]:
    return spawn([str(binary), "-c", "import time; time.sleep(120)", "-pidfile", str(pidfile)], pidfile)  # type: ignore[operator]


def _sleep(spawn: object, pidfile: Path) -> subprocess.Popen[bytes]:
    return spawn(["sleep", "120"], pidfile)  # type: ignore[operator]


def _gone(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return True


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


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("{bad", "Expecting property name"),
        ("[]", "list indices must be integers"),
        ('{"cluster": "c1"}', "missing key 'image'"),
    ],
)
def test_corrupt_state_is_one_error_naming_the_file_and_the_recovery(tmp_path: Path, text: str, detail: str) -> None:
    state = _state(tmp_path)
    state.state_file.write_text(text)
    with pytest.raises(cluster.StateFileError, match=detail) as err:
        cluster.ClusterState.load(state.directory)
    assert str(state.state_file) in err.value.message
    assert f"invoke down --cluster c1 --state-dir {tmp_path.resolve()}" in (err.value.hint or "")
    image = tmp_path / "node.qcow2"
    image.write_bytes(b"x")
    with pytest.raises(cluster.StateFileError):
        cluster.start(cluster="c1", image=image, workers=0, state_dir=tmp_path, accel="tcg", **K8S)
    with pytest.raises(cluster.StateFileError):
        acceptance.acceptance_command(hosts=[], cluster="c1", state_dir=tmp_path)
    assert state.state_file.read_text() == text


def test_state_naming_files_outside_the_cluster_is_corrupt(tmp_path: Path) -> None:
    """A state.json edited to point elsewhere must not make `down` delete (or signal) what it names."""
    state = _state(tmp_path)
    outside = tmp_path / "precious.qcow2"
    outside.write_text("keep me")
    state.save()
    data = json.loads(state.state_file.read_text())
    data["nodes"][0]["vm"]["overlay"] = str(outside)
    state.state_file.write_text(json.dumps(data))
    with pytest.raises(cluster.StateFileError, match="names files outside"):
        cluster.ClusterState.load(state.directory)
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert outside.read_text() == "keep me"
    assert not state.state_file.exists()


@pytest.mark.parametrize("pid", [0, -1, 1])
def test_state_with_a_pid_that_addresses_groups_or_init_is_corrupt(tmp_path: Path, pid: int) -> None:
    state = _state(tmp_path, pid=pid)
    state.save()
    with pytest.raises(cluster.StateFileError, match=f"has pid {pid}"):
        cluster.ClusterState.load(state.directory)


def test_down_leaves_a_process_that_reused_the_pid_alone(tmp_path: Path, spawn: object) -> None:
    state = _state(tmp_path)
    pidfile = state.directory / "vms" / "cp" / "cp.pid"
    bystander = _sleep(spawn, pidfile)
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert bystander.poll() is None, "down killed a process that is not the cluster's qemu"
    assert not pidfile.exists()


def test_down_without_state_stops_the_qemu_its_pid_file_names(tmp_path: Path, spawn: object, fake_qemu_binary: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    state = _state(tmp_path)
    qemu = _fake_qemu(spawn, fake_qemu_binary, state.directory / "vms" / "cp" / "cp.pid")
    other = _fake_qemu(spawn, fake_qemu_binary, tmp_path / "elsewhere" / "cp.pid")  # another cluster's qemu
    (state.directory / "vms" / "worker-1").mkdir()
    bystander = _sleep(spawn, state.directory / "vms" / "worker-1" / "worker-1.pid")
    assert not state.state_file.exists()
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert _gone(qemu)
    assert other.poll() is None and bystander.poll() is None
    assert not (state.directory / "vms").exists()
    assert "worker-1.pid names pid" in capsys.readouterr().err


def test_down_with_a_corrupt_state_stops_by_pid_files_and_removes_it(tmp_path: Path, spawn: object,
                                                                     fake_qemu_binary: Path) -> None:  # fmt: skip
    state = _state(tmp_path)
    state.state_file.write_text("{bad")
    qemu = _fake_qemu(spawn, fake_qemu_binary, state.directory / "vms" / "cp" / "cp.pid")
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert _gone(qemu)
    assert not state.state_file.exists()
    assert (state.directory / "cluster.yaml").exists(), "down without --purge keeps the cluster"


def test_purge_refuses_while_a_vm_runs_and_deletes_nothing(tmp_path: Path, spawn: object,
                                                          fake_qemu_binary: Path) -> None:  # fmt: skip
    state = _state(tmp_path)
    state.save()
    qemu = _fake_qemu(spawn, fake_qemu_binary, state.directory / "vms" / "cp" / "cp.pid")
    before = sorted(state.directory.rglob("*"))
    with pytest.raises(NodeimageError, match="cluster 'c1' is running \\(1 VM: cp\\)") as err:
        cluster.down(cluster="c1", state_dir=tmp_path, purge=True)
    assert "`invoke down --cluster c1" in (err.value.hint or "")
    assert qemu.poll() is None
    assert sorted(state.directory.rglob("*")) == before
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert _gone(qemu)
    cluster.down(cluster="c1", state_dir=tmp_path, purge=True)
    assert not state.directory.exists()


def test_purge_deletes_nothing_outside_the_cluster_directory(tmp_path: Path) -> None:
    state = _state(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    (state.directory / "link").symlink_to(outside)
    cluster.down(cluster="c1", state_dir=tmp_path, purge=True)
    assert not state.directory.exists()
    assert (outside / "keep").read_text() == "x"


def test_purge_refuses_a_directory_that_is_no_cluster(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("years of work")
    with pytest.raises(NodeimageError, match="not a nodeimage cluster directory"):
        cluster.down(cluster="docs", state_dir=tmp_path, purge=True)
    assert (tmp_path / "docs" / "thesis.tex").exists()


def test_purge_refuses_a_symlinked_cluster_directory(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir()
    (target / "cluster.yaml").write_text("name: c1\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "c1").symlink_to(target)
    with pytest.raises(NodeimageError, match="is a symbolic link"):
        cluster.down(cluster="c1", state_dir=tmp_path / "state", purge=True)
    assert (target / "cluster.yaml").exists()


def test_down_of_an_unknown_cluster_is_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.down(cluster="ghost", state_dir=tmp_path, purge=True)
    assert "no cluster 'ghost'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_up_refuses_while_pid_files_show_the_cluster_running(tmp_path: Path, spawn: object,
                                                             fake_qemu_binary: Path) -> None:  # fmt: skip
    state = _state(tmp_path)
    _fake_qemu(spawn, fake_qemu_binary, state.directory / "vms" / "cp" / "cp.pid")
    image = tmp_path / "node.qcow2"
    image.write_bytes(b"x")
    with pytest.raises(NodeimageError, match="cluster 'c1' is already up \\(1 VM running: cp\\)"):
        cluster.start(cluster="c1", image=image, workers=0, state_dir=tmp_path, accel="tcg", **K8S)


def test_a_failed_up_leaves_no_cluster_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "s"))

    monkeypatch.setattr(seed, "write_seed_iso", full)
    image = tmp_path / "node.qcow2"
    image.write_bytes(b"x")
    with pytest.raises(NodeimageError, match="no space left"):
        cluster.start(cluster="c1", image=image, workers=1, state_dir=tmp_path / "s", accel="tcg", **K8S)
    assert not (tmp_path / "s").exists()


def test_cluster_files_are_private(tmp_path: Path) -> None:
    from nodeimage.nodespec import NodeSpec

    seed.seed_node(cluster="c1", node=NodeSpec("control-plane", "cp", "192.168.100.10"), state_dir=tmp_path, **K8S)
    directory = tmp_path / "c1"
    for path in [directory, *directory.rglob("*")]:
        want = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == want, path


def test_acceptance_command_for_given_hosts(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "admin.conf"
    kubeconfig.write_text("x")
    cmd, env = acceptance.acceptance_command(
        hosts=["ssh://ubuntu@10.0.0.5", "ssh://ubuntu@10.0.0.6"], kubeconfig=kubeconfig, standins=True
    )
    assert "--hosts=ssh://ubuntu@10.0.0.5,ssh://ubuntu@10.0.0.6" in cmd
    assert "--booted" in cmd and "--standins" in cmd
    assert env["NODEIMAGE_KUBECONFIG"] == str(kubeconfig.resolve())
    assert "--sudo" in cmd
    assert "--sudo" not in acceptance.acceptance_command(hosts=["ssh://root@h"], sudo=False)[0]


def test_acceptance_command_for_an_up_cluster(tmp_path: Path) -> None:
    state = _state(tmp_path)
    state.save()
    cmd, env = acceptance.acceptance_command(hosts=[], cluster="c1", state_dir=tmp_path)
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
        acceptance.acceptance_command(state_dir=tmp_path, **kw)


def test_down_without_state_stops_the_hub_by_its_pid_file_and_only_the_hub(tmp_path: Path, spawn: object) -> None:
    state = _state(tmp_path)
    net = privnet.start_private_net(state.directory / "vms")
    assert read_pidfile(net.pidfile) == net.pid
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert not is_running(net.pid)
    bystander = spawn(["sleep", "120"], state.directory / "vms" / privnet.HUB_PIDFILE)  # type: ignore[operator]
    cluster.down(cluster="c1", state_dir=tmp_path)
    assert bystander.poll() is None


@pytest.mark.parametrize("text", ["0", "-1", "1", "abc", "", "12 34"])
def test_a_pid_file_without_a_usable_pid_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / "x.pid").write_text(text)
    assert read_pidfile(tmp_path / "x.pid") is None


@pytest.mark.parametrize("pid", [0, -1, 1])
def test_pids_that_address_groups_or_init_are_never_running_vms(pid: int) -> None:
    assert not is_running(pid)  # os.kill(0 or -1, ...) would signal process groups
