"""nodeimage.vm with real qemu: a boot-sector "image" boots in a second under TCG.

The e2e-marked test at the end boots a real node image (the base image when
one has been built) and reaches it over SSH.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import pytest

from nodeimage import privnet, procs, ssh, vm
from nodeimage.log import NodeimageError
from nodeimage.nocloud import write_seed_iso
from nodeimage.sshkey import generate_keypair

REPO = Path(__file__).resolve().parents[2]
MESSAGE = b"nodeimage-boot-ok"


def _boot_sector_image(path: Path) -> Path:
    """A 1 MiB raw disk whose MBR prints MESSAGE on COM1 and halts (real mode, hand-assembled)."""
    code = bytes.fromhex(
        "31c0"  # xor ax,ax
        "8ed8"  # mov ds,ax
        "fc"  # cld
        "baf803"  # mov dx,0x3f8
        "be207c"  # mov si,0x7c20
        "ac"  # lodsb
        "84c0"  # test al,al
        "7403"  # jz halt
        "ee"  # out dx,al
        "ebf8"  # jmp lodsb
        "fa"  # halt: cli
        "f4"  # hlt
        "ebfc"  # jmp halt
    )
    sector = bytearray(512)
    sector[: len(code)] = code
    sector[0x20 : 0x20 + len(MESSAGE) + 1] = MESSAGE + b"\n"
    sector[0x20 + len(MESSAGE) + 1] = 0
    sector[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(sector) + bytes(1024 * 1024 - 512))
    return path


def _wait_for_serial(machine: vm.VM, needle: bytes, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in machine.serial_log.read_bytes():
            return True
        time.sleep(0.2)
    return False


def _spec(disk: Path, **kw: object) -> vm.VMSpec:
    return vm.VMSpec(name="t1", disk=disk, **kw)  # type: ignore[arg-type]


def test_qemu_command_wires_overlay_ssh_seed_and_private_net(tmp_path: Path) -> None:
    net = privnet.PrivateNet(hub_port=40000, pid=1, log=tmp_path / "hub.log")
    spec = vm.VMSpec(
        name="cp",
        disk=tmp_path / "image.qcow2",
        seed_iso=tmp_path / "seed.iso",
        cpus=2,
        memory_mib=3072,
        private_net=net,
        private_mac="52:54:00:aa:bb:cc",
        nat_mac="52:54:00:aa:bb:cd",
    )
    cmd = vm.qemu_command(
        spec,
        overlay=tmp_path / "o.qcow2",
        serial_log=tmp_path / "serial.log",
        monitor=tmp_path / "m.sock",
        pidfile=tmp_path / "pid",
        ssh_port=2222,
        private_port=40001,
    )
    joined = " ".join(cmd)
    assert f"file={tmp_path / 'o.qcow2'},if=virtio,format=qcow2" in joined
    assert str(spec.disk) not in joined, "the image itself must never be given to qemu"
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in joined
    assert f"file={tmp_path / 'seed.iso'},media=cdrom,readonly=on" in joined
    assert "socket,id=priv,udp=127.0.0.1:40000,localaddr=127.0.0.1:40001" in joined
    assert "mac=52:54:00:aa:bb:cc" in joined
    assert cmd[cmd.index("-accel") + 1] == "tcg"
    assert cmd[cmd.index("-m") + 1] == "3072"
    assert f"file:{tmp_path / 'serial.log'}" in cmd


def test_free_port_is_bindable() -> None:
    port = vm.free_tcp_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_mac_for_is_stable_and_distinct() -> None:
    assert vm.mac_for("cp", 1) == vm.mac_for("cp", 1)
    assert vm.mac_for("cp", 1) != vm.mac_for("worker-1", 1)
    assert vm.mac_for("cp", 0).startswith("52:54:00:")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"disk": Path("/nonexistent/node.qcow2")}, "VM disk image not found: /nonexistent/node.qcow2"),
        ({"seed_iso": Path("/nonexistent/seed.iso")}, "seed ISO not found"),
        ({"accel": "hvf"}, "invalid accelerator 'hvf'"),
        ({"private_mac": "52:54:00:zz:00:00"}, "invalid MAC address"),
    ],
)
def test_bad_spec_dies_and_creates_nothing(tmp_path: Path, kw: dict, message: str) -> None:
    disk = _boot_sector_image(tmp_path / "disk.raw")
    spec = _spec(kw.pop("disk", disk), **kw)
    work = tmp_path / "work"
    with pytest.raises(NodeimageError, match=message.replace(".", r"\.")):
        vm.start(spec, work)
    assert not work.exists()


def test_boot_writes_serial_and_stop_removes_overlay(tmp_path: Path) -> None:
    disk = _boot_sector_image(tmp_path / "disk.raw")
    before = hashlib.sha256(disk.read_bytes()).hexdigest()
    seed = tmp_path / "seed.iso"
    write_seed_iso(seed, user_data="#cloud-config\n", meta_data={"instance-id": "t1"})
    with vm.booted(_spec(disk, seed_iso=seed, cpus=1, memory_mib=256), tmp_path / "work") as machine:
        assert procs.is_running(machine.pid)
        assert machine.overlay.is_file()
        assert _wait_for_serial(machine, MESSAGE), vm.serial_tail(machine)
    assert not procs.is_running(machine.pid)
    assert not machine.overlay.exists()
    assert hashlib.sha256(disk.read_bytes()).hexdigest() == before, "the image was modified"


def test_wait_for_ssh_dies_with_serial_tail_when_the_vm_has_no_ssh(tmp_path: Path) -> None:
    disk = _boot_sector_image(tmp_path / "disk.raw")
    key = tmp_path / "id"
    generate_keypair(key)
    with vm.booted(_spec(disk, cpus=1, memory_mib=256), tmp_path / "work") as machine:
        assert _wait_for_serial(machine, MESSAGE)
        with pytest.raises(NodeimageError, match="no SSH") as err:
            ssh.wait_for_ssh(machine, user="nobody", key=key, timeout=5)
        assert MESSAGE.decode() in str(err.value), "the error should show the serial console"


def test_private_net_hub_repeats_frames_to_the_other_peers(tmp_path: Path) -> None:
    with privnet.private_net(tmp_path) as net:
        peers = []
        for _ in range(3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(3)
            sock.sendto(b"nodeimage-hub-register", ("127.0.0.1", net.hub_port))
            peers.append(sock)
        time.sleep(0.3)
        peers[0].sendto(b"frame-from-0", ("127.0.0.1", net.hub_port))
        assert peers[1].recv(100) == b"frame-from-0"
        assert peers[2].recv(100) == b"frame-from-0"
        peers[0].settimeout(0.5)
        with pytest.raises(TimeoutError):
            peers[0].recv(100)
        for sock in peers:
            sock.close()
    assert not procs.is_running(net.pid)


def _base_image() -> Path | None:
    found = sorted((REPO / "build" / "base").glob("*.qcow2"))
    return found[0] if found else None


@pytest.mark.e2e
def test_real_image_boots_with_seed_and_answers_ssh(tmp_path: Path) -> None:
    image = _base_image()
    if image is None:
        pytest.skip("no base image under build/base/ (run `invoke base` first)")
    key = tmp_path / "id"
    pub = generate_keypair(key)
    user_data = (
        "#cloud-config\n"
        "users:\n"
        "  - name: nodeimage\n"
        "    sudo: ALL=(ALL) NOPASSWD:ALL\n"
        "    shell: /bin/bash\n"
        f"    ssh_authorized_keys: ['{pub}']\n"
    )
    seed = tmp_path / "seed.iso"
    write_seed_iso(seed, user_data=user_data, meta_data={"instance-id": "vm-test", "local-hostname": "vm-test"})
    with vm.booted(vm.VMSpec(name="vm-test", disk=image, seed_iso=seed), tmp_path / "work") as machine:
        ssh.wait_for_ssh(machine, user="nodeimage", key=key, timeout=600)
        out = ssh.ssh_run(machine, "nodeimage", key, ["hostname"]).stdout.decode().strip()
        assert out == "vm-test"
