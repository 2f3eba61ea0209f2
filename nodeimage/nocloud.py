"""NoCloud seed ISOs: the volume labelled ``cidata`` that cloud-init reads on first boot.

A seed may carry cluster secrets (the CA key on a control plane, the bootstrap
token on every node), so the ISO is written 0600 and its staging directory
0700, and neither ever appears under its final name half-written.
The ISO's bytes depend only on its content: file and volume dates are fixed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from nodeimage.fsutil import atomic_path
from nodeimage.log import die
from nodeimage.run import run, which

VOLUME_LABEL = "cidata"
# 2020-01-01 00:00:00 UTC: any fixed date makes the ISO reproducible.
FIXED_EPOCH = 1577836800
_FIXED_DATE = "2020010100000000"  # mkisofs date form YYYYMMDDhhmmsscc


def _dump(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False)


def write_seed_iso(
    path: Path,
    *,
    user_data: str,
    meta_data: dict,
    network_config: dict | None = None,
) -> None:
    """Write a NoCloud seed ISO at ``path`` (mode 0600) from the three documents."""
    # cloud-init's own headers: a cloud-config, a script, or a jinja template of either (as Cluster API writes)
    body = user_data.removeprefix("## template: jinja\n")
    if not body.startswith("#cloud-config\n") and not body.startswith("#!"):
        die(
            "user-data must start with '#cloud-config' (or '#!' for a script), optionally after '## template: jinja'",
            hint="render it with nodeimage.seed, which adds the header",
        )
    if "instance-id" not in meta_data:
        die("meta-data has no instance-id", hint="cloud-init uses instance-id to decide what a first boot is")
    xorriso = which("xorriso")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix=".seed-", dir=path.parent if path.parent.exists() else None) as tmp:
        stage = Path(tmp) / "cidata"
        stage.mkdir(mode=0o700)
        files = {"user-data": user_data, "meta-data": _dump(meta_data)}
        if network_config is not None:
            files["network-config"] = _dump(network_config)
        for name, text in files.items():
            fd = os.open(stage / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            os.utime(stage / name, (FIXED_EPOCH, FIXED_EPOCH))
        os.utime(stage, (FIXED_EPOCH, FIXED_EPOCH))
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(FIXED_EPOCH))
        with atomic_path(path, mode=0o600) as out:
            out.unlink()  # xorriso refuses to write over an existing non-ISO file
            run(
                [
                    xorriso, "-as", "mkisofs",
                    "-quiet",
                    "-output", out,
                    "-volid", VOLUME_LABEL,
                    "-joliet", "-rock",
                    "--modification-date=" + _FIXED_DATE,
                    stage,
                ],
                env=env,
                capture=True,
            )  # fmt: skip
            out.chmod(0o600)
