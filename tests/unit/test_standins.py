"""The test stand-ins: documented upstream layouts, deterministic bytes, a lock that matches, honest programs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "standins"))
import make_standins as ms  # noqa: E402

REAL_LOCK = REPO / "artifacts.lock.yaml"


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    out = tmp_path_factory.mktemp("standins")
    lock_path, mirror = ms.make_standins(REAL_LOCK, out)
    return lock_path, mirror, yaml.safe_load(lock_path.read_text())


def artifact(standins: tuple[Path, Path, dict], name: str) -> bytes:
    _, mirror, lock = standins
    entry = lock["artifacts"][name]["arches"]
    url = (entry.get("amd64") or entry["all"])["url"]
    return ms.mirror_path(mirror, url).read_bytes()


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def member_bytes(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        f = tar.extractfile(name)
        assert f is not None, name
        return f.read()


# --- layouts (UPSTREAM.md, "What is inside each archive") ------------------------------------------


def test_kubernetes_node_layout(standins):
    names = members(artifact(standins, "kubernetes-node"))
    assert all(n == "kubernetes" or n.startswith("kubernetes/") for n in names)
    for tool in ("kubelet", "kubeadm", "kubectl", "kube-proxy"):
        assert names[f"kubernetes/node/bin/{tool}"].mode == 0o755
    assert "kubernetes/kubernetes-src.tar.gz" in names and "kubernetes/LICENSES" in names


def test_crio_bundle_layout(standins):
    names = members(artifact(standins, "cri-o"))
    top = "crio-v1.17.2/"
    assert all(n == top.rstrip("/") or n.startswith(top) for n in names)
    wanted = [
        "Makefile",
        "bin/crio-x86_64-static-glibc",
        "bin/crio-x86_64-static-musl",
        "bin/pinns",
        "contrib/10-crio-bridge.conf",
        "contrib/policy.json",
        "contrib/crio.service",
        "contrib/crio-wipe.service",
        "contrib/crio-shutdown.service",
        "etc/crio.conf",
        "etc/crictl.yaml",
        "etc/crio-umount.conf",
    ]
    for rel in wanted:
        assert top + rel in names, rel
    # The 1.17 bundle does not carry these: the image must install them separately.
    assert not [n for n in names if n.rsplit("/", 1)[-1] in ("conmon", "runc", "crictl", "portmap")]


def test_crio_unit_is_type_notify(standins):
    unit = member_bytes(artifact(standins, "cri-o"), "crio-v1.17.2/contrib/crio.service").decode()
    assert "Type=notify" in unit and "ExecStart=/usr/local/bin/crio" in unit


def test_kata_static_layout(standins):
    names = members(artifact(standins, "kata-static"))
    assert all(
        n in (".", "./opt", "./opt/kata") or n.startswith("./opt/kata/") for n in names
    )  # tarfile drops the "/" of directories
    base = "./opt/kata/"
    for rel in (
        "bin/kata-runtime",
        "bin/containerd-shim-kata-v2",
        "bin/kata-qemu",
        "bin/kata-fc",
        "bin/kata-clh",
        "bin/kata-qemu-virtiofs",
        "bin/qemu-system-x86_64",
        "libexec/kata-containers/kata-proxy",
        "libexec/kata-containers/kata-shim",
        "share/defaults/kata-containers/configuration-qemu.toml",
        "share/kata-containers/vmlinuz.container",
        "share/kata-containers/kata-containers.img",
    ):
        assert base + rel in names, rel
    link = names[base + "share/defaults/kata-containers/configuration.toml"]
    assert link.issym() and link.linkname == "configuration-qemu.toml"


def test_cni_plugins_flat_with_sixteen_binaries(standins):
    names = members(artifact(standins, "cni-plugins"))
    files = sorted(n for n, m in names.items() if m.isfile())
    assert files == sorted(f"./{p}" for p in ms.CNI_PLUGINS)
    assert len(files) == 16 and "./portmap" in files
    assert set(names) - set(files) == {"."}  # the "./" directory entry


def test_crictl_single_entry(standins):
    assert list(members(artifact(standins, "crictl"))) == ["crictl"]


def test_conmon_is_a_single_program(standins):
    assert artifact(standins, "conmon").startswith(b"#!/usr/bin/python3\n")


def test_weave_manifest_shape(standins):
    manifest = yaml.safe_load(artifact(standins, "weave-manifest"))
    assert manifest["kind"] == "List"
    kinds = [i["kind"] for i in manifest["items"]]
    assert kinds == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "DaemonSet"]
    ds = manifest["items"][5]
    assert ds["metadata"]["name"] == "weave-net"
    spec = ds["spec"]["template"]["spec"]
    images = {c["name"]: c["image"] for c in spec["containers"]}
    assert images == {"weave": "weaveworks/weave-kube:2.8.1", "weave-npc": "weaveworks/weave-npc:2.8.1"}
    assert [c["name"] for c in spec["initContainers"]] == ["weave-init"]
    assert {e["name"] for e in spec["containers"][0]["env"]} >= {"HOSTNAME", "INIT_CONTAINER"}


# --- determinism ---------------------------------------------------------------------------------


def test_two_runs_give_identical_artifacts(tmp_path: Path, standins):
    lock2, _ = ms.make_standins(REAL_LOCK, tmp_path)
    first = {n: a["arches"] for n, a in standins[2]["artifacts"].items()}
    second = {n: a["arches"] for n, a in yaml.safe_load(lock2.read_text())["artifacts"].items()}
    assert first == second


@pytest.mark.parametrize("name", ["kubernetes-node", "cri-o", "cni-plugins", "crictl"])
def test_gzip_archives_are_normalised(standins, name: str):
    data = artifact(standins, name)
    assert data[:2] == b"\x1f\x8b" and data[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"
    assert data[3] & 0x08 == 0, "gzip header must not carry a file name"
    for m in members(data).values():
        assert (m.mtime, m.uid, m.gid) == (ms.MTIME, 0, 0), m.name
    assert list(members(data)) == sorted(members(data))


def test_xz_archive_is_normalised(standins):
    data = artifact(standins, "kata-static")
    assert data.startswith(b"\xfd7zXZ\x00")
    raw = lzma.decompress(data)
    assert all((m.mtime, m.uid, m.gid) == (ms.MTIME, 0, 0) for m in members(raw).values())


# --- the stand-in lock ---------------------------------------------------------------------------


def test_lock_matches_real_names_versions_and_urls(standins):
    real = yaml.safe_load(REAL_LOCK.read_text())["artifacts"]
    lock = standins[2]["artifacts"]
    assert set(lock) == {n for n in real if not n.endswith("-cloudimg")}
    for name, entry in lock.items():
        assert entry["version"] == real[name]["version"]
        for arch, e in entry["arches"].items():
            assert e["url"] == real[name]["arches"][arch]["url"]


def test_lock_digests_and_sizes_match_the_files(standins):
    _, mirror, lock = standins
    real = yaml.safe_load(REAL_LOCK.read_text())["artifacts"]
    for name, entry in lock["artifacts"].items():
        for arch, e in entry["arches"].items():
            data = ms.mirror_path(mirror, e["url"]).read_bytes()
            algorithm, _, digest = e["checksum"].partition(":")
            real_algorithm = (real[name]["arches"][arch]["checksum"] or "sha256:").split(":")[0]
            assert algorithm == real_algorithm
            assert digest == hashlib.new(algorithm, data).hexdigest()
            assert e["size"] == len(data)
            assert e["checksum_source"] == "trust-on-first-use"
            assert e["checksum_note"] == "nodeimage test stand-in, NOT the upstream artifact"


def test_mirror_layout_is_host_then_path(tmp_path: Path):
    url = "https://dl.k8s.io/v1.17.17/kubernetes-node-linux-amd64.tar.gz"
    assert ms.mirror_path(tmp_path, url) == tmp_path / "dl.k8s.io/v1.17.17/kubernetes-node-linux-amd64.tar.gz"
    assert urlsplit(url).path.endswith(ms.mirror_path(tmp_path, url).name)


def test_unknown_lock_artifact_is_refused(tmp_path: Path):
    lock = yaml.safe_load(REAL_LOCK.read_text())
    lock["artifacts"]["containerd"] = {"version": "1.0", "arches": {"amd64": {"url": "https://x/y", "checksum": None}}}
    path = tmp_path / "lock.yaml"
    path.write_text(yaml.safe_dump(lock))
    with pytest.raises(ValueError, match="containerd"):
        ms.make_standins(path, tmp_path / "out")


# --- the programs --------------------------------------------------------------------------------


@pytest.fixture
def programs(tmp_path: Path, standins) -> Path:
    """Every stand-in program unpacked into tmp/bin, with NODEIMAGE_STANDIN_ROOT=tmp/root."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, archive_member in [
        ("kubelet", "kubernetes/node/bin/kubelet"),
        ("kubeadm", "kubernetes/node/bin/kubeadm"),
        ("kubectl", "kubernetes/node/bin/kubectl"),
    ]:
        (bindir / name).write_bytes(
            member_bytes(gzip.decompress(artifact(standins, "kubernetes-node")), archive_member)
        )
    (bindir / "crio").write_bytes(
        member_bytes(gzip.decompress(artifact(standins, "cri-o")), "crio-v1.17.2/bin/crio-x86_64-static-musl")
    )
    (bindir / "crictl").write_bytes(member_bytes(gzip.decompress(artifact(standins, "crictl")), "crictl"))
    (bindir / "kata-runtime").write_bytes(
        member_bytes(lzma.decompress(artifact(standins, "kata-static")), "./opt/kata/bin/kata-runtime")
    )
    (bindir / "conmon").write_bytes(artifact(standins, "conmon"))
    (bindir / "portmap").write_bytes(member_bytes(gzip.decompress(artifact(standins, "cni-plugins")), "./portmap"))
    return bindir


def run(bindir: Path, tool: str, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": os.environ["PATH"], "NODEIMAGE_STANDIN_ROOT": str(bindir.parent / "root"), **env}
    return subprocess.run(
        [sys.executable, str(bindir / tool), *args], input=stdin, capture_output=True, text=True, env=environ
    )


VERSIONS = [
    ("kubelet", ["--version"], "Kubernetes v1.17.17\n"),
    ("kubeadm", ["version", "-o", "short"], "v1.17.17\n"),
    ("kubectl", ["version", "--client", "--short"], "Client Version: v1.17.17\n"),
    ("crictl", ["--version"], "crictl version v1.17.0\n"),
    ("conmon", ["--version"], "conmon version 2.0.10\ncommit: nodeimage-standin\n"),
]


@pytest.mark.parametrize(("tool", "args", "out"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_version_in_the_real_format(programs: Path, tool: str, args: list[str], out: str):
    proc = run(programs, tool, *args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, out, "")


def test_crio_and_kata_versions(programs: Path):
    assert run(programs, "crio", "--version").stdout.splitlines()[0] == "crio version 1.17.2"
    assert run(programs, "kata-runtime", "--version").stdout.splitlines()[0] == "kata-runtime  : 1.12.1"


def test_every_invocation_is_logged(programs: Path):
    run(programs, "kubelet", "--version")
    run(programs, "kubelet", "--v=2", "--version")
    log = programs.parent / "root/var/log/nodeimage-standins/kubelet.log"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line[1:] for line in lines] == [["--version"], ["--v=2", "--version"]]


def test_kubectl_apply_keeps_each_manifest(programs: Path, tmp_path: Path):
    kubeconfig = tmp_path / "root/etc/kubernetes/admin.conf"
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: k, cluster: {}}]\n")
    rc = "apiVersion: node.k8s.io/v1beta1\nkind: RuntimeClass\nmetadata: {name: kata}\nhandler: kata-runtime\n"
    manifest = tmp_path / "rc.yaml"
    manifest.write_text(rc)
    conf = ["--kubeconfig", "/etc/kubernetes/admin.conf"]
    assert run(programs, "kubectl", *conf, "apply", "-f", str(tmp_path / "rc.yaml")).returncode == 1  # not in root
    (tmp_path / "root" / manifest.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "root" / manifest.relative_to("/")).write_text(rc)
    assert run(programs, "kubectl", *conf, "apply", "-f", str(manifest)).returncode == 0
    assert run(programs, "kubectl", *conf, "apply", "-f", "-", stdin="apiVersion: v1\nkind: List\n").returncode == 0
    logs = tmp_path / "root/var/log/nodeimage-standins"
    assert (logs / "kubectl-apply-1.yaml").read_text() == rc
    assert (logs / "kubectl-apply-2.yaml").read_text() == "apiVersion: v1\nkind: List\n"


def test_kubectl_flags_with_values_are_not_subcommands(programs: Path, tmp_path: Path):
    proc = run(programs, "kubectl", "-n", "kube-system", "version", "--client", "--short")
    assert proc.stdout == "Client Version: v1.17.17\n"


def test_cni_plugin_answers_version(programs: Path):
    proc = run(programs, "portmap", CNI_COMMAND="VERSION")
    assert proc.returncode == 0 and "0.4.0" in json.loads(proc.stdout)["supportedVersions"]


