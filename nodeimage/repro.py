"""`invoke repro`: are two builds of the same inputs the same bytes, and if not, what differs?

Outputs are compared by the SHA-256 their manifests record. For a qcow2
that differs, ``qemu-img compare`` first tells a container-only difference
(same guest-visible bytes) from a content one; for a content difference both
file trees are extracted (``nodeimage.disk.disk_to_tree``) and compared
file by file: type, mode, owner, size, content hash, mtime, link target,
xattrs. ``diffoscope`` adds detail for the differing files where it is
installed. For an OVA the members are compared, and a differing VMDK is
checked with ``qemu-img compare``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodeimage import formats
from nodeimage.fsutil import file_sha256
from nodeimage.log import info, step
from nodeimage.run import run
from nodeimage.verify import Output, manifest_outputs, read_manifest

MAX_DIFFOSCOPE_FILES = 10
MAX_DIFFOSCOPE_CHARS = 20_000
MAX_LISTED = 200


@dataclass(frozen=True)
class Entry:
    """What is compared for one path of a file tree."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    digest: str  # content sha256 of a regular file, link target of a symlink, "" otherwise
    rdev: int
    xattrs: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class FileDiff:
    """One path whose entries differ (or that exists on one side only)."""

    path: str
    changes: tuple[str, ...]


@dataclass(frozen=True)
class OutputResult:
    path: str
    format: str
    sha_a: str | None
    sha_b: str | None

    @property
    def identical(self) -> bool:
        return self.sha_a is not None and self.sha_a == self.sha_b


@dataclass
class ReproReport:
    """The comparison of two build directories; ``render()`` is what `invoke repro` prints."""

    dir_a: Path
    dir_b: Path
    outputs: list[OutputResult] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)  # per output path: findings
    file_diffs: dict[str, list[FileDiff]] = field(default_factory=dict)  # per qcow2 output path
    detail: dict[str, str] = field(default_factory=dict)  # diffoscope text per output path
    input_notes: list[str] = field(default_factory=list)
    # outputs whose file is not what its build's manifest records: never "identical"
    tampered: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return bool(self.outputs) and not self.tampered and all(o.identical for o in self.outputs)

    def render(self) -> str:
        lines = [f"Reproducibility: {self.dir_a} vs {self.dir_b}"]
        lines += [f"  ! {n}" for n in self.input_notes]
        lines += [f"  ! TAMPERED {t}" for t in self.tampered]
        for o in self.outputs:
            if o.identical:
                lines.append(f"  identical  {o.path} ({o.format}) sha256 {o.sha_a}")
                continue
            if o.sha_a is None or o.sha_b is None:
                side = "first" if o.sha_b is None else "second"
                lines.append(f"  MISSING    {o.path} ({o.format}): only in the {side} build")
                continue
            lines.append(f"  DIFFERS    {o.path} ({o.format})")
            lines.append(f"               a: {o.sha_a}")
            lines.append(f"               b: {o.sha_b}")
            lines += [f"             {n}" for n in self.notes.get(o.path, [])]
            diffs = self.file_diffs.get(o.path)
            if diffs is not None:
                summary = f"{len(diffs)} paths differ" if diffs else "identical (the filesystem's layout differs)"
                lines.append(f"             file trees: {summary}")
                for d in diffs[:MAX_LISTED]:
                    lines.append(f"               {d.path}: {'; '.join(d.changes)}")
                if len(diffs) > MAX_LISTED:
                    lines.append(f"               ... and {len(diffs) - MAX_LISTED} more")
            if o.path in self.detail:
                lines.append("             diffoscope:")
                lines += [f"               {t}" for t in self.detail[o.path].splitlines()]
        verdict = "IDENTICAL: every output has the same sha256" if self.identical else "NOT REPRODUCIBLE"
        lines.append(verdict)
        return "\n".join(lines) + "\n"


# --- file trees ------------------------------------------------------------------------------------


def _xattrs(path: Path) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
        return tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))
    except OSError:
        return ()


def scan_tree(root: Path) -> dict[str, Entry]:
    """Every path under ``root`` (relative, '/' for the root) with what is compared."""
    out: dict[str, Entry] = {}
    for path in _walk(root):
        st = path.lstat()
        rel = "/" + path.relative_to(root).as_posix() if path != root else "/"
        if stat.S_ISREG(st.st_mode):
            kind, digest = "file", file_sha256(path)
        elif stat.S_ISLNK(st.st_mode):
            kind, digest = "symlink", os.readlink(path)
        elif stat.S_ISDIR(st.st_mode):
            kind, digest = "dir", ""
        else:
            kind, digest = stat.filemode(st.st_mode)[0], ""
        size = st.st_size if kind in ("file", "symlink") else 0  # directory sizes follow allocation, not content
        out[rel] = Entry(
            kind=kind,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            size=size,
            mtime_ns=st.st_mtime_ns,
            digest=digest,
            rdev=st.st_rdev,
            xattrs=_xattrs(path),
        )
    return out


def _walk(root: Path) -> Iterator[Path]:
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            yield Path(dirpath) / name


def compare_trees(a: dict[str, Entry], b: dict[str, Entry]) -> list[FileDiff]:
    """Path-by-path differences between two scans, sorted by path."""
    diffs = []
    for path in sorted(set(a) | set(b)):
        ea, eb = a.get(path), b.get(path)
        if ea is None or eb is None:
            diffs.append(FileDiff(path, ("only in " + ("b" if ea is None else "a"),)))
            continue
        if ea == eb:
            continue
        changes = []
        if ea.kind != eb.kind:
            changes.append(f"type {ea.kind} != {eb.kind}")
        if ea.mode != eb.mode:
            changes.append(f"mode {ea.mode:04o} != {eb.mode:04o}")
        if (ea.uid, ea.gid) != (eb.uid, eb.gid):
            changes.append(f"owner {ea.uid}:{ea.gid} != {eb.uid}:{eb.gid}")
        if ea.size != eb.size:
            changes.append(f"size {ea.size} != {eb.size}")
        if ea.digest != eb.digest:
            what = "target" if ea.kind == "symlink" else "content sha256"
            changes.append(f"{what} {ea.digest[:16]} != {eb.digest[:16]}")
        if ea.mtime_ns != eb.mtime_ns:
            changes.append(f"mtime {ea.mtime_ns / 1e9:.9f} != {eb.mtime_ns / 1e9:.9f}")
        if ea.rdev != eb.rdev:
            changes.append(f"device {ea.rdev} != {eb.rdev}")
        if ea.xattrs != eb.xattrs:
            changes.append(f"xattrs {[n for n, _ in ea.xattrs]} != {[n for n, _ in eb.xattrs]}")
        diffs.append(FileDiff(path, tuple(changes)))
    return diffs


# --- tools -----------------------------------------------------------------------------------------


def _qemu_img_identical(a: Path, b: Path, fmt: str) -> bool | None:
    """True if the two images hold the same guest-visible bytes, False if not, None if it cannot tell."""
    if shutil.which("qemu-img") is None:
        return None
    proc = run(["qemu-img", "compare", "-q", "-f", fmt, "-F", fmt, a, b], check=False, capture=True)
    return {0: True, 1: False}.get(proc.returncode)


def diffoscope(a: Path, b: Path, *extra: str) -> str | None:
    """diffoscope's text report of a vs b (truncated), or None where diffoscope is not installed."""
    if shutil.which("diffoscope") is None:
        return None
    proc = run(
        ["diffoscope", "--no-progress", "--text", "-", "--max-report-size", str(MAX_DIFFOSCOPE_CHARS), *extra, a, b],
        check=False,
        capture=True,
        timeout=600,
    )
    text = proc.stdout.decode(errors="replace")
    if proc.returncode not in (0, 1):
        return f"(diffoscope failed with exit code {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]})"
    return text[:MAX_DIFFOSCOPE_CHARS]


def _tar_members(path: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """name -> (size, mtime, uid, gid, sha256) for every member of a tar (an OVA)."""
    out = {}
    with tarfile.open(path) as tf:
        for m in tf:
            h = hashlib.sha256()
            fh = tf.extractfile(m)
            if fh is not None:
                while chunk := fh.read(4 * 1024 * 1024):
                    h.update(chunk)
            out[m.name] = (m.size, int(m.mtime), m.uid, m.gid, h.hexdigest())
    return out


# --- per-format comparisons ------------------------------------------------------------------------


def compare_disks(report: ReproReport, out: Output, a: Path, b: Path, scratch: Path) -> None:
    notes = report.notes.setdefault(out.path, [])
    same = _qemu_img_identical(a, b, "qcow2")
    if same:
        notes.append("qemu-img compare: same guest-visible bytes; only the qcow2 container (cluster layout) differs")
        return
    if same is None:
        notes.append("qemu-img compare could not compare the images")
    if os.geteuid() != 0:
        notes.append("file-by-file comparison skipped: extracting a disk's files needs root")
        return
    from nodeimage.disk import disk_to_tree

    work = Path(tempfile.mkdtemp(prefix=".nodeimage-repro-", dir=scratch))
    try:
        tree_a, tree_b = work / "a", work / "b"
        disk_to_tree(a, tree_a)
        disk_to_tree(b, tree_b)
        with step("Comparing the two file trees"):
            diffs = compare_trees(scan_tree(tree_a), scan_tree(tree_b))
        report.file_diffs[out.path] = diffs
        content = [d for d in diffs if any(c.startswith("content") for c in d.changes)]
        details = []
        for d in content[:MAX_DIFFOSCOPE_FILES]:
            rel = d.path.lstrip("/")
            text = diffoscope(tree_a / rel, tree_b / rel)
            if text is None:
                break
            # Name the files as a/<path> and b/<path>, not by the temporary directory.
            details.append(text.replace(str(tree_a), "a").replace(str(tree_b), "b").strip())
        if details:
            report.detail[out.path] = "\n".join(details)
        elif content and shutil.which("diffoscope") is None:
            notes.append("install diffoscope (Debian: diffoscope-minimal) for a content diff of the differing files")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare_ovas(report: ReproReport, out: Output, a: Path, b: Path, scratch: Path) -> None:
    notes = report.notes.setdefault(out.path, [])
    ma, mb = _tar_members(a), _tar_members(b)
    if list(ma) != list(mb):
        notes.append(f"member lists differ: {list(ma)} != {list(mb)}")
    for name in [n for n in ma if n in mb]:
        (sa, ta, ua, ga, ha), (sb, tb, ub, gb, hb) = ma[name], mb[name]
        changes = []
        if (ta, ua, ga) != (tb, ub, gb):
            changes.append(f"header mtime/uid/gid {ta}/{ua}/{ga} != {tb}/{ub}/{gb}")
        if ha != hb:
            changes.append(f"size {sa} != {sb}" if sa != sb else "content differs at equal size")
        if changes:
            notes.append(f"member {name}: {'; '.join(changes)}")
        if ha != hb and name.endswith(".vmdk"):
            work = Path(tempfile.mkdtemp(prefix=".nodeimage-repro-", dir=scratch))
            try:
                with tarfile.open(a) as ta_, tarfile.open(b) as tb_:
                    ta_.extract(name, work / "a", filter="data")
                    tb_.extract(name, work / "b", filter="data")
                same = _qemu_img_identical(work / "a" / name, work / "b" / name, "vmdk")
                if same is not None:
                    verdict = "the same" if same else "different"
                    notes.append(f"member {name}: qemu-img compare says the disk content is {verdict}")
            finally:
                shutil.rmtree(work, ignore_errors=True)
    text = diffoscope(a, b, "--exclude", "*.vmdk")
    if text:
        report.detail[out.path] = text.strip()


def compare_builds(dir_a: Path, dir_b: Path, *, scratch: Path | None = None) -> ReproReport:
    """Compare the outputs both manifests list, and explain each difference as far as the tools allow."""
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    man_a, man_b = read_manifest(dir_a), read_manifest(dir_b)
    outs_a = {o.path: o for o in manifest_outputs(dir_a, man_a)}
    outs_b = {o.path: o for o in manifest_outputs(dir_b, man_b)}
    report = ReproReport(dir_a, dir_b)
    for key in ("profile", "arch", "inputs", "base", "nodeimage_version", "packer_version"):
        va, vb = man_a.get(key), man_b.get(key)
        if va != vb:
            report.input_notes.append(f"the builds had different {key}: {_short(va)} != {_short(vb)}")
    scratch = Path(scratch) if scratch else dir_a.parent
    for path in sorted(set(outs_a) | set(outs_b)):
        oa, ob = outs_a.get(path), outs_b.get(path)
        some = oa or ob
        assert some is not None
        # The files themselves are hashed: a manifest says what a build wrote, not what is there now.
        sha_a = _actual(report, dir_a, oa)
        sha_b = _actual(report, dir_b, ob)
        result = OutputResult(path, some.format, sha_a, sha_b)
        report.outputs.append(result)
        if result.identical or sha_a is None or sha_b is None:
            continue
        with step(f"Explaining the difference in {path}"):
            formats.get(some.format).compare(report, some, dir_a / path, dir_b / path, scratch)
    info("identical" if report.identical else "outputs differ")
    return report


def _actual(report: ReproReport, build_dir: Path, out: Output | None) -> str | None:
    """The sha256 of the output's file as it is now (None when missing); a note when it is not what the
    manifest records."""
    if out is None:
        return None
    path = build_dir / out.path
    if not path.is_file():
        report.input_notes.append(f"{path} is listed in its manifest but missing")
        return None
    digest = file_sha256(path)
    if digest != out.sha256:
        report.tampered.append(f"{path} is not the file its manifest records (sha256 {digest}, recorded {out.sha256})")
    return digest


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 200 else text[:197] + "..."


def build_twice(
    profile: str,
    *,
    out_root: Path,
    formats: str = "qcow2,ova,containerdisk",
    mirror: str | None = None,
    lock_file: Path | None = None,
    run_suite: bool = False,
) -> ReproReport:
    """Build ``profile`` twice from the same inputs (into out_root/a and out_root/b) and compare the two."""
    from nodeimage.build import build

    dirs = []
    for side in ("a", "b"):
        with step(f"Build {side} of {profile} for the reproducibility check"):
            dirs.append(
                build(
                    profile,
                    lock_file=lock_file,
                    mirror=mirror,
                    formats=formats,
                    out_root=Path(out_root) / side,
                    run_suite=run_suite,
                    force=True,
                )
            )
    return compare_builds(dirs[0], dirs[1], scratch=Path(out_root))
