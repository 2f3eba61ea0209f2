"""nodeimage.base without a mirror: argument construction, validation, tree configuration, the cache."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeimage import base
from nodeimage.log import NodeimageError


def _cmd(distro: str, release: str, mirror: str = "http://mirror.example/x") -> list[str]:
    _, rel = base.get_release(distro, release)
    return base.mmdebstrap_command(rel, mirror=mirror, arch="amd64", target=Path("/t/tree"))


def _option(cmd: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, cmd)
    return values[0]


def test_debian_command() -> None:
    cmd = _cmd("debian", "bookworm", "http://deb.debian.org/debian")
    assert cmd[0] == "mmdebstrap"
    assert cmd[-3:] == ["bookworm", "/t/tree", "http://deb.debian.org/debian"]
    assert _option(cmd, "mode") == "root"
    assert _option(cmd, "format") == "directory"
    assert _option(cmd, "variant") == "minbase"
    assert _option(cmd, "architectures") == "amd64"
    assert _option(cmd, "components") == "main"
    packages = _option(cmd, "include").split(",")
    for pkg in ("linux-image-amd64", "systemd-sysv", "cloud-init", "cloud-guest-utils", "openssh-server",
                "ifupdown", "isc-dhcp-client", "sudo", "python3", "e2fsprogs"):  # fmt: skip
        assert pkg in packages
    assert "linux-image-virtual" not in packages
    assert not any(a.startswith("--keyring") for a in cmd)
    hooks = [a for a in cmd if a.startswith("--essential-hook=")]
    assert hooks == ['--essential-hook=mkdir -p "$1/etc/modprobe.d" && echo \'blacklist floppy\' > '
                     '"$1/etc/modprobe.d/nodeimage-no-floppy.conf"']  # fmt: skip


def test_ubuntu_command() -> None:
    cmd = _cmd("ubuntu", "focal", "http://archive.ubuntu.com/ubuntu")
    assert cmd[-3:] == ["focal", "/t/tree", "http://archive.ubuntu.com/ubuntu"]
    assert _option(cmd, "components") == "main,universe"
    assert _option(cmd, "keyring") == "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    packages = _option(cmd, "include").split(",")
    for pkg in ("linux-image-virtual", "initramfs-tools", "cloud-init", "netplan.io", "openssh-server"):
        assert pkg in packages
    assert "linux-image-amd64" not in packages
    assert "ifupdown" not in packages


def test_package_lists_have_no_duplicates() -> None:
    from nodeimage import distros

    for name in distros.names():
        for rel in distros.get(name).releases:
            assert len(set(rel.base_packages)) == len(rel.base_packages), rel.codename


def test_release_by_version_or_codename() -> None:
    assert base.get_release("ubuntu", "20.04")[1] == base.get_release("ubuntu", "focal")[1]


@pytest.mark.parametrize(
    ("distro", "release", "message"),
    [
        ("fedora", "39", "unknown distribution 'fedora'"),
        ("debian", "focal", "unknown debian release 'focal'"),
        ("ubuntu", "jammy", "unknown ubuntu release 'jammy'"),
    ],
)
def test_unknown_distro_or_release(distro: str, release: str, message: str) -> None:
    with pytest.raises(NodeimageError, match=message):
        base.get_release(distro, release)


@pytest.mark.parametrize("mirror", ["deb.debian.org/debian", "ftp://deb.debian.org/debian", "http://", ""])
def test_bad_mirror_form(mirror: str) -> None:
    with pytest.raises(NodeimageError, match="mirror must be an http://, https:// or file:// URL") as exc:
        base.check_mirror(mirror)
    assert repr(mirror) in str(exc.value)


def test_mirror_trailing_slash_is_dropped() -> None:
    assert base.check_mirror("http://deb.debian.org/debian/") == "http://deb.debian.org/debian"


def test_build_base_rejects_bad_inputs_before_work(tmp_path: Path) -> None:
    with pytest.raises(NodeimageError, match="unknown distribution"):
        base.build_base(distro="arch", release="rolling", mirror="http://m/x", out_dir=tmp_path)
    with pytest.raises(NodeimageError, match="unknown architecture 'arm64'; supported: amd64"):
        base.build_base(distro="debian", release="bookworm", mirror="http://m/x", arch="arm64", out_dir=tmp_path)
    with pytest.raises(NodeimageError, match="mirror must be"):
        base.build_base(distro="debian", release="bookworm", mirror="mirror", out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_mirror_is_named() -> None:
    mirror = f"http://127.0.0.1:{_closed_port()}/debian"
    with pytest.raises(NodeimageError, match=f"cannot reach mirror {mirror}"):
        base.probe_mirror(mirror, "bookworm", timeout=5)


@pytest.fixture
def mirror_server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "mirror"
    (root / "debian" / "dists" / "bookworm").mkdir(parents=True)
    (root / "debian" / "dists" / "bookworm" / "Release").write_text("Suite: stable\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/debian"
    finally:
        server.shutdown()
        server.server_close()


def test_mirror_probe_finds_release(mirror_server: str) -> None:
    base.probe_mirror(mirror_server, "bookworm", timeout=5)
    with pytest.raises(NodeimageError, match=f"mirror {mirror_server} does not serve release 'trixie'.*HTTP 404"):
        base.probe_mirror(mirror_server, "trixie", timeout=5)


def test_file_mirror_probe(tmp_path: Path) -> None:
    (tmp_path / "dists" / "bookworm").mkdir(parents=True)
    (tmp_path / "dists" / "bookworm" / "Release").write_text("")
    base.probe_mirror(f"file://{tmp_path}", "bookworm")
    with pytest.raises(NodeimageError, match="has no focal release"):
        base.probe_mirror(f"file://{tmp_path}", "focal")


def _inputs(**over: object) -> dict[str, object]:
    args: dict[str, object] = {"mirror": "http://deb.debian.org/debian", "arch": "amd64", "epoch": 1686355200}
    args.update(over)
    return base.base_inputs(*base.get_release("debian", "bookworm"), **args)  # type: ignore[arg-type]


def test_inputs_and_uuid_depend_on_every_input() -> None:
    ref = _inputs()
    assert ref == _inputs()
    assert base.fs_uuid_for(ref) == base.fs_uuid_for(_inputs())
    for change in ({"mirror": "http://snapshot.debian.org/archive/debian/20240101T000000Z"}, {"arch": "arm64"},
                   {"epoch": 1700000000}):  # fmt: skip
        other = _inputs(**change)
        assert other != ref
        assert base.fs_uuid_for(other) != base.fs_uuid_for(ref)


def test_recipe_digest_follows_the_files(monkeypatch: pytest.MonkeyPatch) -> None:
    distro, rel = base.get_release("debian", "bookworm")
    before = base.recipe_digest(distro, rel)
    assert base.recipe_digest(distro, rel) == before
    monkeypatch.setitem(base.STATIC_FILES, "etc/default/locale", "LANG=C\n")
    assert base.recipe_digest(distro, rel) != before


def test_recipe_digest_follows_the_generalisation_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from nodeimage import generalise

    distro, rel = base.get_release("debian", "bookworm")
    before = base.recipe_digest(distro, rel)
    monkeypatch.setattr(generalise, "LIST_FILE", Path(__file__))  # any other text: here, not a list at all
    with pytest.raises(NodeimageError, match="cannot read"):
        base.recipe_digest(distro, rel)
    monkeypatch.undo()
    assert base.recipe_digest(distro, rel) == before


def _fake_tree(root: Path) -> Path:
    (root / "etc" / "ssh").mkdir(parents=True)
    (root / "etc" / "network").mkdir()
    for name in ("ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_host_ed25519_key"):
        (root / "etc" / "ssh" / name).write_text("secret")
    (root / "etc" / "ssh" / "sshd_config").write_text("# config\n")
    (root / "etc" / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc" / "resolv.conf").write_text("nameserver 10.255.255.53\n")
    (root / "var" / "lib" / "cloud" / "instance").mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "boot" / "vmlinuz-1").write_text("k")
    (root / "vmlinuz.old").symlink_to("boot/vmlinuz-1")
    return root


def test_configure_tree_generalises(tmp_path: Path) -> None:
    tree = _fake_tree(tmp_path / "tree")
    debian = base.get_release("debian", "bookworm")[0]
    base.configure_tree(tree, fs_uuid="b7f61d93-b9f6-5b44-b3a0-e4d5fa6b0981", distro=debian)
    etc = tree / "etc"
    assert "UUID=b7f61d93-b9f6-5b44-b3a0-e4d5fa6b0981 / ext4 " in (etc / "fstab").read_text()
    assert sorted(p.name for p in (etc / "ssh").iterdir()) == ["sshd_config"]
    assert (etc / "machine-id").read_text() == ""
    assert (etc / "resolv.conf").read_text() == ""
    assert not any((tree / "var" / "lib" / "cloud").iterdir())  # cloud-init clean --seed: the state is gone
    assert not (tree / "vmlinuz.old").is_symlink()
    cfg = (etc / "cloud" / "cloud.cfg.d" / "90_nodeimage.cfg").read_text()
    assert "datasource_list: [ NoCloud, ConfigDrive, None ]" in cfg
    assert "preserve_sources_list: true" in cfg
    assert "source /etc/network/interfaces.d/*" in (etc / "network" / "interfaces").read_text()
    link = etc / "systemd" / "system" / "multi-user.target.wants" / "nodeimage-ssh-hostkeys.service"
    assert link.is_symlink()
    assert "127.0.0.1\tlocalhost" in (etc / "hosts").read_text()
    # running it twice is harmless
    base.configure_tree(tree, fs_uuid="b7f61d93-b9f6-5b44-b3a0-e4d5fa6b0981", distro=debian)


def test_cloud_cfg_is_valid_yaml_with_the_datasources() -> None:
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load(base.CLOUD_CFG)
    assert cfg["datasource_list"] == ["NoCloud", "ConfigDrive", "None"]
    assert cfg["ssh_genkeytypes"] == ["rsa", "ecdsa", "ed25519"]


def _seed_cache(out: Path, **over: object) -> Path:
    inputs = _inputs()
    image = out / "debian-bookworm-amd64.qcow2"
    out.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"pretend qcow2")
    record = {**inputs, "sha256": hashlib.sha256(image.read_bytes()).hexdigest(), **over}
    image.with_suffix(".json").write_text(json.dumps(record))
    return image


def _no_build(*args: object, **kwargs: object) -> None:
    raise AssertionError("the cache should have been used")


def test_same_inputs_reuse_the_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    image = _seed_cache(tmp_path)
    monkeypatch.setattr(base, "_bootstrap", _no_build)
    monkeypatch.setattr(base, "probe_mirror", _no_build)
    got = base.build_base(distro="debian", release="bookworm", mirror="http://deb.debian.org/debian/",
                          out_dir=tmp_path)  # fmt: skip
    assert got == image
    assert "reusing base image" in capsys.readouterr().err


class _Built(Exception):
    pass


def _would_build(*args: object, **kwargs: object) -> None:
    raise _Built


@pytest.mark.parametrize(
    "change",
    [{"mirror": "http://other/debian"}, {"epoch": 1}, {"recipe": "0" * 16}, {"sha256": "0" * 64}],
)
def test_changed_inputs_rebuild(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, object]) -> None:
    _seed_cache(tmp_path, **change)
    monkeypatch.setattr(base, "probe_mirror", _would_build)
    monkeypatch.setattr(base.os, "geteuid", lambda: 0)
    monkeypatch.setattr(base, "which", lambda *a: "/usr/bin/mmdebstrap")
    with pytest.raises(_Built):
        base.build_base(distro="debian", release="bookworm", mirror="http://deb.debian.org/debian", out_dir=tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_mounts_left_by_a_killed_bootstrap_are_removed_before_cleanup(tmp_path: Path) -> None:
    import subprocess

    target = tmp_path / "tree with space" / "proc"
    target.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", str(target)], check=True)
    try:
        assert base.mounts_below(tmp_path) == [target]
        with base._no_mounts_left(tmp_path):
            pass
        assert base.mounts_below(tmp_path) == []
    finally:
        subprocess.run(["umount", str(target)], check=False, capture_output=True)
