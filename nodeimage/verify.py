"""`invoke verify`: check a build directory's outputs against its build-manifest.json.

The manifest is the build's record of what it wrote; an output that is
missing, or whose size or SHA-256 differs from that record, is reported with
the file, the expected and the actual value. Every output is checked before
the first mismatch is reported, so one run names all of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

from nodeimage import formats
from nodeimage.formats import Recorded
from nodeimage.fsutil import file_sha256
from nodeimage.log import die, info, step

MANIFEST_NAME = "build-manifest.json"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


Output = Recorded  # one output as the manifest records it


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


def verify_build(build_dir: Path) -> list[Output]:
    """Check every output in ``build_dir``'s manifest for existence, size and SHA-256, then what its format
    checks inside it (an OVA's .mf against its members, the SBOM against the qcow2's digest, ...);
    die naming each problem. Returns the outputs, all checked, when nothing is wrong."""
    build_dir = Path(build_dir)
    outputs = manifest_outputs(build_dir)
    problems = []
    with step(f"Verifying {len(outputs)} outputs of {build_dir} against {MANIFEST_NAME}"):
        for out in outputs:
            problem = check_output(build_dir, out)
            if problem:
                problems.append(problem)
                continue
            inner = formats.get(out.format).check(build_dir / out.path, outputs, build_dir) if out.format else []
            problems += inner
            if not inner:
                info(f"ok {out.path} ({out.format or 'file'}, {out.size} bytes, sha256 {out.sha256})")
        if problems:  # inside the step: it ends as failed (✗), and the verdict comes after every check
            die(
                f"{len(problems)} problems with the {len(outputs)} outputs of {build_dir} "
                f"(checked against {MANIFEST_NAME}):\n    " + "\n    ".join(problems),
                hint="rebuild (invoke build --force) or fetch the outputs again; do not use these files",
            )
    return outputs
