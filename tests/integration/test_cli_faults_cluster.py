"""One error per fault for `invoke seed`, `invoke up` and `invoke down`, from the command line.

Each row of the table runs ``python -m invoke seed|up|down ...`` with one fault and asserts: exit code 1,
exactly one ``error:`` line with the expected text (naming the path or the option), no traceback, and
nothing written or lost anywhere under the test's directory (every path, mode and byte is compared).
`up` never gets as far as qemu: each fault stops it before a VM could start.

`down` is also run against live processes: a ``sleep`` whose pid is in a VM's pid file must survive (its
command line is not that VM's qemu), and a fake qemu must be stopped. The fake is a copy of the Python
interpreter named ``qemu-system-x86_64`` running with ``-pidfile <that pid file>``; GNU sleep cannot be the
fake because it rejects the ``-pidfile`` argument.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.fakeqemu import interpreter_named_qemu, wait_exec

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only or a full tmpfs needs root")

KEY_TYPES = "ssh-ed25519, ecdsa-sha2-nistp256"


# --- the world each fault runs in -----------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cluster 'demo' (control plane cp .10, worker w1 .11), keys and a profile of another version: made once."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from nodeimage.nodespec import NodeSpec
    from nodeimage.seed import seed_node

    root = tmp_path_factory.mktemp("template")
    k8s = {"kubernetes_version": "v1.17.17", "pod_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/12"}
    for role, name, ip in (("control-plane", "cp", "192.168.100.10"), ("worker", "w1", "192.168.100.11")):
        seed_node(cluster="demo", node=NodeSpec(role, name, ip), state_dir=root / "state", **k8s)
    key = ed25519.Ed25519PrivateKey.generate()
    (root / "id").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                serialization.NoEncryption()))  # fmt: skip
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    (root / "id.pub").write_bytes(public + b" me@host\n")
    (root / "dss.pub").write_text("ssh-dss AAAAB3NzaC1kc3MAAACBAP me@host\n")
    (root / "token").write_text("not-a-token\n")
    (root / "a-dir").mkdir()
    (root / "a-file").write_text("not a directory\n")
    (root / "node.qcow2").write_bytes(b"not booted: every fault stops `up` before qemu\n")
    profile = yaml.safe_load((REPO / "profiles" / "k8s-1.17.yaml").read_text())
    profile["name"] = "k8s-1.17-older"
    profile["kubernetes"]["version"] = "v1.17.16"
    profile["components"]["kubernetes-node"] = "v1.17.16"
    (root / "older.yaml").write_text(yaml.safe_dump(profile))
    (root / "state" / "docs").mkdir()
    (root / "state" / "docs" / "thesis.tex").write_text("years of work\n")
    return root


@pytest.fixture(scope="module")
def fake_qemu_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return interpreter_named_qemu(tmp_path_factory.mktemp("fakeqemu"))


class World:
    """One test's copy of the template, its mounts and the processes it started."""

    def __init__(self, root: Path, fake_qemu: Path) -> None:
        self.root = root
        self.fake_qemu = fake_qemu
        self.procs: list[subprocess.Popen[bytes]] = []
        self.mounts: list[Path] = []
        files = {"pub": "id.pub", "dss": "dss.pub", "image": "node.qcow2", "older": "older.yaml"}
        names = ("state", "id", "token", "a-dir", "a-file", "missing")
        self.places = {key: str(root / name) for key, name in {**files, **{n: n for n in names}}.items()}

    @property
    def cluster(self) -> Path:
        return self.root / "state" / "demo"

    def spawn(self, argv: list[str], pidfile: Path) -> subprocess.Popen[bytes]:
        """Start a process and write its pid into ``pidfile``, as qemu would."""
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_exec(proc.pid, argv[0])
        self.procs.append(proc)
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{proc.pid}\n")
        return proc

    def fake_qemu_for(self, node: str) -> subprocess.Popen[bytes]:
        pidfile = self.cluster / "vms" / node / f"{node}.pid"
        return self.spawn([str(self.fake_qemu), "-c", "import time; time.sleep(120)", "-pidfile", str(pidfile)],
                          pidfile)  # fmt: skip

    def sleep_for(self, node: str) -> subprocess.Popen[bytes]:
        return self.spawn(["sleep", "120"], self.cluster / "vms" / node / f"{node}.pid")

    def mount(self, name: str, opts: str) -> None:
        point = self.root / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], check=True)
        self.mounts.append(point)
        self.places[name] = str(point)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for point in self.mounts:
            subprocess.run(["umount", "--lazy", str(point)], check=False)


@pytest.fixture
def world(tmp_path: Path, template: Path, fake_qemu_binary: Path) -> Iterator[World]:
    root = tmp_path / "w"
    shutil.copytree(template, root, symlinks=True)
    w = World(root, fake_qemu_binary)
    if os.geteuid() == 0:
        w.mount("ro", "ro,size=1m")
        w.mount("full", "size=64k,nr_inodes=64")
        (root / "full" / "filler").write_bytes(b"\0" * (40 << 10))  # room for a few small files, not for an ISO
    try:
        yield w
    finally:
        w.close()


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``root``: mode and bytes (symlinks as their target), to prove nothing changed."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes() if p.is_file() else b""
        out[str(p.relative_to(root))] = (st.st_mode, data)
    return out


def invoke(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODEIMAGE_")}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- the table ---------------------------------------------------------------------------------

Setup = Callable[[World], object] | None


def _corrupt_state(w: World) -> None:
    (w.cluster / "state.json").write_text("{not json")


def _corrupt_record(w: World) -> None:
    (w.cluster / "cluster.yaml").write_text("- not\n- a mapping\n")


def _running(w: World) -> None:
    w.fake_qemu_for("cp")


def _symlinked_cluster(w: World) -> None:
    (w.root / "links").mkdir()
    (w.root / "links" / "demo").symlink_to(w.cluster)


def _args(task: str, defaults: dict[str, str], **options: str) -> list[str]:
    """``task --key=value ...`` from ``defaults`` overridden by ``options`` (invoke takes each option once)."""
    merged = {**defaults, **{k.replace("_", "-"): v for k, v in options.items()}}
    return [task, *(f"--{k}={v}" if v != "" else f"--{k}" for k, v in merged.items())]


def seed(**options: str) -> list[str]:
    """A worker w2 of cluster demo, unless the options say otherwise."""
    return _args("seed", {"cluster": "demo", "state-dir": "{state}", "role": "worker", "name": "w2",
                          "ip": "192.168.100.12"}, **options)  # fmt: skip


def fresh(**options: str) -> list[str]:
    """The control plane of a new cluster."""
    return _args("seed", {"cluster": "fresh", "role": "control-plane", "name": "cp", "ip": "192.168.100.10"},
                 **options)  # fmt: skip


def up(**options: str) -> list[str]:
    return _args("up", {"cluster": "demo", "state-dir": "{state}", "image": "{image}", "accel": "tcg",
                        "no-wait": ""}, **options)  # fmt: skip


def down(**options: str) -> list[str]:
    return _args("down", {"cluster": "demo", "state-dir": "{state}"}, **options)


# (id, args, setup, text the one error line must contain)
CASES: list[tuple[str, list[str], Setup, str]] = [
    ("seed-ssh-key-missing", seed(ssh_key="{missing}"), None,
     "SSH public key file {missing} does not exist (--ssh-key)"),
    ("seed-ssh-key-dir", seed(ssh_key="{a-dir}"), None, "SSH public key file {a-dir} is a directory, not a file"),
    ("seed-ssh-key-unreadable", seed(ssh_key="/proc/self/mem"), None,
     "cannot read SSH public key file /proc/self/mem (--ssh-key): Input/output error"),
    ("seed-ssh-key-private", seed(ssh_key="{id}"), None, "SSH public key file {id} (--ssh-key) is a private key"),
    ("seed-ssh-key-type", seed(ssh_key="{dss}"), None, "unknown key type 'ssh-dss'"),
    ("seed-token-missing", seed(token_file="{missing}"), None,
     "bootstrap token file {missing} does not exist (--token-file)"),
    ("seed-token-dir", seed(token_file="{a-dir}"), None, "bootstrap token file {a-dir} is a directory"),
    ("seed-token-unreadable", seed(token_file="/proc/self/mem"), None,
     "cannot read bootstrap token file /proc/self/mem (--token-file): Input/output error"),
    ("seed-token-invalid", seed(token_file="{token}"), None,
     "bootstrap token file {token} holds no valid token (value not shown"),
    ("seed-out-under-proc", seed(out="/proc/nodeimage-out"), None,
     "cannot write the seed to /proc/nodeimage-out/demo-w2 (--out): it cannot be created there"),
    ("seed-out-is-file", seed(out="{a-file}"), None, "--out {a-file} is not a directory"),
    ("seed-out-under-file", seed(out="{a-file}/seeds"), None,
     "cannot write the seed to {a-file}/seeds/demo-w2 (--out): a part of the path is a file"),
    ("seed-state-dir-is-file", fresh(state_dir="{a-file}"), None,
     "state directory {a-file} is not a directory (--state-dir)"),
    ("seed-state-dir-under-proc", fresh(state_dir="/proc/nodeimage-state"), None,
     "cannot write cluster files in /proc/nodeimage-state/fresh (--state-dir): it cannot be created there"),
    ("seed-cluster-escapes", fresh(cluster="../x", state_dir="{state}"), None, "invalid cluster name '../x'"),
    ("seed-worker-named-cp", seed(role="worker", name="cp", ip="192.168.100.12"), None,
     "node name 'cp' is already used in cluster 'demo' by the control-plane at 192.168.100.10"),
    ("seed-duplicate-ip", seed(role="worker", name="w2", ip="192.168.100.11"), None,
     "address 192.168.100.11 is already used in cluster 'demo' by worker 'w1'"),
    ("seed-second-control-plane", seed(role="control-plane", name="cp2", ip="192.168.100.10"), None,
     "cluster 'demo' already has a control plane, 'cp' at 192.168.100.10"),
    ("seed-worker-at-cp-address", seed(role="worker", name="w2", ip="192.168.100.10"), None,
     "worker IP 192.168.100.10 is the control plane's address"),
    ("seed-worker-pod-cidr", seed(pod_cidr="10.32.0.0/12"), None,
     "--pod-cidr 10.32.0.0/12 cannot apply to a worker"),
    ("seed-worker-other-version", seed(profile="{older}"), None,
     "profile 'k8s-1.17-older' is Kubernetes v1.17.16, but the control plane of cluster 'demo' was seeded with "
     "v1.17.17"),
    ("seed-corrupt-cluster-record", seed(), _corrupt_record, "cluster record {state}/demo/cluster.yaml is unreadable"),
    ("up-workers-not-int", up(workers="abc"), None, "--workers: 'abc' is not a whole number"),
    ("up-workers-too-many", up(workers="9"), None, "invalid number of workers 9"),
    ("up-image-missing", up(image="{missing}"), None, "node image not found: {missing}"),
    ("up-image-dir", up(image="{a-dir}"), None, "node image {a-dir} is a directory, not a disk image"),
    ("up-corrupt-state", up(), _corrupt_state, "cluster state {state}/demo/state.json is corrupt"),
    ("up-already-running", up(), _running, "cluster 'demo' is already up (1 VM running: cp)"),
    ("up-state-dir-is-file", up(state_dir="{a-file}"), None, "state directory {a-file} is not a directory"),
    ("up-cluster-escapes", up(cluster="../x"), None, "invalid cluster name '../x'"),
    ("down-cluster-escapes", down(cluster="../x"), None, "invalid cluster name '../x'"),
    ("down-symlinked-cluster", down(state_dir="{state}/../links", purge=""),
     _symlinked_cluster, "is a symbolic link"),
    ("down-state-dir-is-file", down(state_dir="{a-file}"), None, "state directory {a-file} is not a directory"),
    ("down-purge-running", down(purge=""), _running,
     "cluster 'demo' is running (1 VM: cp): not deleting {state}/demo"),
    ("down-purge-not-a-cluster", down(cluster="docs", purge=""), None,
     "{state}/docs is not a nodeimage cluster directory (no cluster.yaml): not deleting it"),
]  # fmt: skip
ROOT_CASES: list[tuple[str, list[str], Setup, str]] = [
    ("seed-out-read-only", seed(out="{ro}"), None,
     "cannot write the seed to {ro}/demo-w2 (--out): the filesystem is read-only"),
    ("seed-out-full", seed(out="{full}"), None,
     "cannot write the seed to {full}/demo-w2 (--out): no space left on the filesystem"),
    ("seed-state-dir-read-only", fresh(state_dir="{ro}/state"), None,
     "cannot write cluster files in {ro}/state/fresh (--state-dir): the filesystem is read-only"),
    ("seed-state-dir-full", fresh(state_dir="{full}/state"), None,
     "cannot write cluster files in {full}/state/fresh (--state-dir): no space left on the filesystem"),
    ("up-state-dir-read-only", up(cluster="fresh", state_dir="{ro}/state"), None,
     "cannot write cluster files in {ro}/state/fresh (--state-dir): the filesystem is read-only"),
    ("up-state-dir-full", up(cluster="fresh", state_dir="{full}/state"), None,
     "cannot write cluster files in {full}/state/fresh (--state-dir): no space left on the filesystem"),
]  # fmt: skip


def _run_fault(w: World, case: tuple[str, list[str], Setup, str]) -> None:
    _, args, setup, expected = case
    if setup is not None:
        setup(w)
    alive = [p for p in w.procs if p.poll() is None]
    before = snapshot(w.root)
    proc = invoke([a.format(**w.places) for a in args])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert len(error_lines(proc.stderr)) == 1 and proc.stderr.count("error:") == 1, proc.stderr
    assert expected.format(**w.places) in error_lines(proc.stderr)[0], proc.stderr
    assert snapshot(w.root) == before, "the fault wrote or deleted something"
    assert all(p.poll() is None for p in alive), "a process was killed"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fault(world: World, case: tuple[str, list[str], Setup, str]) -> None:
    _run_fault(world, case)


@needs_root
@pytest.mark.parametrize("case", ROOT_CASES, ids=[c[0] for c in ROOT_CASES])
def test_filesystem_fault(world: World, case: tuple[str, list[str], Setup, str]) -> None:
    _run_fault(world, case)


# --- down against live processes ----------------------------------------------------------------


def _gone(proc: subprocess.Popen[bytes]) -> bool:
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_down_leaves_a_process_that_merely_has_the_pid_alone(world: World) -> None:
    bystander = world.sleep_for("cp")
    proc = invoke(["down", "--cluster=demo", f"--state-dir={world.places['state']}"])
    assert proc.returncode == 0, proc.stderr
    assert bystander.poll() is None, "down killed a process that is not the cluster's qemu"
    assert "cp.pid names pid" in proc.stderr and "left it alone" in proc.stderr
    assert not error_lines(proc.stderr) and "Traceback" not in proc.stderr


def test_down_without_state_stops_the_fake_qemu_by_its_pid_file(world: World) -> None:
    qemu = world.fake_qemu_for("cp")
    bystander = world.sleep_for("w1")
    assert not (world.cluster / "state.json").exists()
    proc = invoke(["down", "--cluster=demo", f"--state-dir={world.places['state']}"])
    assert proc.returncode == 0, proc.stderr
    assert _gone(qemu), "down left the cluster's qemu running"
    assert bystander.poll() is None
    assert "stopped vm cp" in proc.stderr and "1 VM stopped" in proc.stderr
    assert not (world.cluster / "vms").exists()
    assert (world.cluster / "pki" / "ca.key").exists(), "down without --purge keeps the secrets"


def test_down_with_a_corrupt_state_recovers_by_pid_files(world: World) -> None:
    _corrupt_state(world)
    qemu = world.fake_qemu_for("cp")
    proc = invoke(["down", "--cluster=demo", f"--state-dir={world.places['state']}"])
    assert proc.returncode == 0, proc.stderr
    assert _gone(qemu)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("WARNING:")]
    assert len(warnings) == 1 and str(world.cluster / "state.json") in warnings[0], proc.stderr
    assert not (world.cluster / "state.json").exists()
    assert not error_lines(proc.stderr) and "Traceback" not in proc.stderr


def test_purge_after_down_deletes_the_cluster_and_nothing_else(world: World) -> None:
    qemu = world.fake_qemu_for("cp")
    state = world.places["state"]
    assert invoke(["down", "--cluster=demo", f"--state-dir={state}", "--purge"]).returncode == 1
    assert qemu.poll() is None
    assert invoke(["down", "--cluster=demo", f"--state-dir={state}"]).returncode == 0
    assert _gone(qemu)
    before = {k: v for k, v in snapshot(world.root).items() if not k.startswith("state/demo")}
    proc = invoke(["down", "--cluster=demo", f"--state-dir={state}", "--purge"])
    assert proc.returncode == 0, proc.stderr
    assert not world.cluster.exists()
    assert snapshot(world.root) == before
