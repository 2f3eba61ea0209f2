"""`invoke verify`: check a build directory's outputs against its build-manifest.json.

The manifest is the build's record of what it wrote; an output that is
missing, or whose size or SHA-256 differs from that record, is reported with
the file, the expected and the actual value. Every output is checked before
the first mismatch is reported, so one run names all of them.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from nodeimage.fsutil import file_sha256
from nodeimage.log import NodeimageError, die, info, step

MANIFEST_NAME = "build-manifest.json"
SBOM_FORMAT = "spdx-json"  # the manifest's "format" for an SBOM written by nodeimage.sbom
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Output:
    """One output as the manifest records it."""

    path: str  # relative to the build directory
    sha256: str
    size: int
    format: str


def read_manifest(build_dir: Path) -> dict[str, Any]:
    """The parsed build-manifest.json of ``build_dir``; dies if it is missing or not JSON."""
    path = Path(build_dir) / MANIFEST_NAME
    if not path.is_file():
        die(f"no {MANIFEST_NAME} in {build_dir}", hint="give the directory a build wrote, e.g. build/k8s-1.17")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        die(f"{path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        die(f"{path}: expected a JSON object at the top level, got {type(data).__name__}")
    return data


def manifest_outputs(build_dir: Path, manifest: dict[str, Any] | None = None) -> list[Output]:
    """The outputs a manifest lists, each checked for a safe relative path, a hex digest and a size."""
    manifest = read_manifest(build_dir) if manifest is None else manifest
    where = Path(build_dir) / MANIFEST_NAME
    raw = manifest.get("outputs")
    if not isinstance(raw, list) or not raw:
        die(f"{where}: 'outputs' must be a non-empty list, got {raw!r}")
    outputs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            die(f"{where}: outputs[{i}] must be an object, got {item!r}")
        path, sha, size = item.get("path"), item.get("sha256"), item.get("size")
        rel = PurePosixPath(path) if isinstance(path, str) else None
        if rel is None or rel.is_absolute() or ".." in rel.parts or not rel.parts:
            die(f"{where}: outputs[{i}].path must be a relative path inside the build directory, got {path!r}")
        if not isinstance(sha, str) or not _HEX64.match(sha):
            die(f"{where}: outputs[{i}].sha256 must be 64 lowercase hex characters, got {sha!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            die(f"{where}: outputs[{i}].size must be a byte count, got {size!r}")
        outputs.append(Output(path=str(rel), sha256=sha, size=size, format=str(item.get("format", ""))))
    return outputs


def check_output(build_dir: Path, out: Output) -> str | None:
    """None if ``out`` is intact, else a sentence naming the file, expected and actual values."""
    path = Path(build_dir) / out.path
    if not path.is_file():
        return f"{path}: missing (the manifest records {out.size} bytes, sha256 {out.sha256})"
    size = path.stat().st_size
    if size != out.size:
        return f"{path}: size {size} bytes, expected {out.size}"
    digest = file_sha256(path)
    if digest != out.sha256:
        return f"{path}: sha256 {digest}, expected {out.sha256}"
    return None


def check_ova(path: Path) -> list[str]:
    """Problems inside an OVA: the .ovf not first, or a member missing from / not matching the .mf."""
    from nodeimage.ovf import parse_manifest

    problems: list[str] = []
    digests: dict[str, str] = {}
    manifest: dict[str, str] | None = None
    names: list[str] = []
    try:
        with tarfile.open(path, mode="r:") as tf:
            for member in tf:
                names.append(member.name)
                fh = tf.extractfile(member)
                if fh is None:
                    problems.append(f"{path}: member {member.name} is not a regular file")
                    continue
                if member.name.endswith(".mf"):
                    data = fh.read()
                    digests[member.name] = hashlib.sha256(data).hexdigest()
                    try:
                        manifest = parse_manifest(data.decode(errors="replace"))
                    except NodeimageError as exc:
                        problems.append(f"{path}: {member.name}: {exc.message}")
                        manifest = {}
                    continue
                h = hashlib.sha256()
                while chunk := fh.read(4 * 1024 * 1024):
                    h.update(chunk)
                digests[member.name] = h.hexdigest()
    except tarfile.TarError as exc:
        return [f"{path}: not a readable tar archive: {exc}"]
    if not names or not names[0].endswith(".ovf"):
        problems.append(f"{path}: the first member must be the .ovf descriptor, found {names[:1]}")
    if manifest is None:
        return [*problems, f"{path}: no .mf manifest inside"]
    for name in names:
        if name.endswith(".mf"):
            continue
        if name not in manifest:
            problems.append(f"{path}: member {name} is not in the .mf manifest")
        elif manifest[name] != digests[name]:
            problems.append(f"{path}: member {name} has sha256 {digests[name]}, its .mf says {manifest[name]}")
    problems += [f"{path}: the .mf lists {n}, which the OVA lacks" for n in manifest if n not in digests]
    return problems


def check_sbom(path: Path, outputs: list[Output]) -> list[str]:
    """Problems with an SPDX SBOM output: it must describe a qcow2 output by that output's recorded sha256."""
    try:
        doc = json.loads(path.read_text())
        described = set(doc["documentDescribes"])
        sums = {
            c["checksumValue"]
            for p in doc["packages"]
            if p["SPDXID"] in described
            for c in p.get("checksums", [])
            if c["algorithm"] == "SHA256"
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{path}: not a readable SPDX JSON document: {exc}"]
    images = {o.sha256 for o in outputs if o.format == "qcow2"}
    if not sums & images:
        return [f"{path}: describes an image with sha256 {sorted(sums)}, but the build's qcow2 is {sorted(images)}"]
    return []


def verify_build(build_dir: Path) -> None:
    """Check every output in ``build_dir``'s manifest for existence, size and SHA-256; die naming each mismatch.

    An intact OVA is also checked inside (its .mf against its members), and
    an SPDX SBOM must describe the build's qcow2 by its digest.
    """
    build_dir = Path(build_dir)
    outputs = manifest_outputs(build_dir)
    problems = []
    with step(f"Verifying {len(outputs)} outputs of {build_dir} against {MANIFEST_NAME}"):
        for out in outputs:
            problem = check_output(build_dir, out)
            if problem:
                problems.append(problem)
                continue
            inner = []
            if out.format == "ova":
                inner = check_ova(build_dir / out.path)
            elif out.format == SBOM_FORMAT:
                inner = check_sbom(build_dir / out.path, outputs)
            problems += inner
            if not inner:
                info(f"ok {out.path} ({out.format or 'file'}, {out.size} bytes, sha256 {out.sha256})")
    if problems:
        die(
            f"{len(problems)} of {len(outputs)} outputs do not match {build_dir / MANIFEST_NAME}:\n    "
            + "\n    ".join(problems),
            hint="rebuild (invoke build --force) or fetch the outputs again; do not use these files",
        )
