"""The real packer: the template validates, and a VM that never answers SSH fails with its console shown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from nodeimage import packer
from nodeimage.accel import MARKER, probe_boot_sector
from nodeimage.layers import build_seed_files, packer_variables
from nodeimage.log import NodeimageError
from nodeimage.sshkey import generate_keypair

REPO = Path(__file__).resolve().parents[2]


def _setup(tmp_path: Path, ssh_timeout: str = "20m") -> tuple[packer.PackerInfo, Path, Path]:
    info = packer.find_packer()
    work = tmp_path / "work"
    work.mkdir()
    # A disk whose boot sector only prints a marker on the serial console and
    # halts: the VM runs but can never answer SSH.
    raw = tmp_path / "halt.raw"
    raw.write_bytes(probe_boot_sector().ljust(1 << 20, b"\0"))
    disk = tmp_path / "halt.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True)
    key = work / "key"
    public = generate_keypair(key)
    stage = work / "stage"
    stage.mkdir()
    script = tmp_path / "10-true.sh"
    script.write_text("#!/usr/bin/env bash\ntrue\n")
    variables = packer_variables(
        base_image=disk,
        work=work,
        accelerator="tcg",
        cpus=1,
        memory_mib=256,
        disk_gib=1,
        seed_files=build_seed_files(work, public),
        key=key,
        stage=stage,
        scripts=[script],
        ssh_timeout=ssh_timeout,
    )
    var_file = work / "variables.json"
    var_file.write_text(json.dumps(variables))
    return info, packer.prepare_template(info, work), var_file


def test_template_validates(tmp_path: Path) -> None:
    info, template, var_file = _setup(tmp_path)
    packer.validate(info, template, var_file, tmp_path / "work")


def test_validate_names_the_problem(tmp_path: Path) -> None:
    info, template, var_file = _setup(tmp_path)
    data = json.loads(var_file.read_text())
    data["ssh_private_key_file"] = str(tmp_path / "missing-key")
    var_file.write_text(json.dumps(data))
    with pytest.raises(NodeimageError, match="missing-key"):
        packer.validate(info, template, var_file, tmp_path / "work")


def test_ssh_timeout_shows_the_serial_console_and_leaves_no_image(tmp_path: Path) -> None:
    info, template, var_file = _setup(tmp_path, ssh_timeout="25s")
    work = tmp_path / "work"
    with pytest.raises(NodeimageError) as err:
        packer.build(info, template, var_file, workdir=work, serial_log=work / "serial.log")
    message = str(err.value)
    assert "packer build failed" in message
    assert "serial console ends with" in message
    assert MARKER.decode() in message  # what the VM printed on its console is in the error
    assert not (work / "packer-out" / "node.qcow2").exists()
