"""The lock's data model: pinned artifacts and images, and the lookups a build makes in them.

Frozen dataclasses, made only by :func:`nodeimage.lock.load_lock` (which
validates the file first) and changed only by copying (``replace_entry``,
``replace_image``), so a :class:`Lock` in hand always describes a valid file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from nodeimage.log import die

CHECKSUM_SOURCES = ("upstream", "third-party", "trust-on-first-use")
TOFU = "trust-on-first-use"
# hashlib name -> hex length; the lock accepts exactly these.
ALGORITHMS = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True)
class LockEntry:
    """One downloadable file: an artifact at one version for one arch."""

    name: str
    version: str
    arch: str
    url: str
    checksum: str | None  # "sha256:<hex>" or "sha512:<hex>"; None until recorded
    checksum_source: str
    checksum_note: str | None = None
    checksum_url: str | None = None
    size: int | None = None
    description: str | None = None

    @property
    def filename(self) -> str:
        """The basename of the URL path: the name upstream gives the file."""
        return PurePosixPath(unquote(urlsplit(self.url).path)).name

    @property
    def algorithm(self) -> str | None:
        return self.checksum.split(":", 1)[0] if self.checksum else None

    @property
    def digest(self) -> str | None:
        return self.checksum.split(":", 1)[1] if self.checksum else None

    @property
    def label(self) -> str:
        """How messages name the entry: name, version and (unless 'all') arch."""
        arch = "" if self.arch == "all" else f" ({self.arch})"
        return f"{self.name} {self.version}{arch}"


@dataclass(frozen=True)
class ImageEntry:
    """One container image a node runs, pinned by the digest of its manifest for one platform."""

    ref: str  # registry/repository:tag, as the node names it
    platform: str  # os/arch, e.g. linux/amd64
    digest: str | None  # sha256:<hex> of the platform's image manifest; None until `invoke lock` records it
    digest_source: str
    size: int | None = None  # bytes of the config and compressed layers
    note: str | None = None

    @property
    def repository(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    @property
    def pinned(self) -> str:
        """repository@digest: what a build copies (it never follows the tag)."""
        assert self.digest
        return f"{self.repository}@{self.digest}"


@dataclass(frozen=True)
class Lock:
    """A parsed lock file; ``entries`` keep the file's order."""

    path: Path
    entries: tuple[LockEntry, ...]
    images: tuple[ImageEntry, ...] = ()

    def names(self) -> list[str]:
        return list(dict.fromkeys(e.name for e in self.entries))

    def arches(self, name: str) -> list[str]:
        return [e.arch for e in self.entries if e.name == name]

    def versions(self, name: str) -> list[str]:
        return list(dict.fromkeys(e.version for e in self.entries if e.name == name))

    def entry(self, name: str, arch: str, version: str | None = None) -> LockEntry:
        """The entry for ``name`` (at ``version``, needed when several are locked) on ``arch``, falling back to
        the arch-independent ``all``."""
        named = [e for e in self.entries if e.name == name]
        if not named:
            die(
                f"{self.path}: no artifact named {name!r}",
                hint=f"the lock has: {', '.join(self.names())}",
            )
        versions = self.versions(name)
        if version is None and len(versions) > 1:
            die(f"{self.path}: {name} is locked at several versions ({', '.join(versions)}): say which")
        if version is not None:
            if version not in versions:
                die(
                    f"{self.path}: {name} is locked at version {', '.join(map(repr, versions))} but {version!r} is "
                    "expected",
                    hint="make the profile's components and the lock agree (then run `invoke lock`)",
                )
            named = [e for e in named if e.version == version]
        by_arch = {e.arch: e for e in named}
        found = by_arch.get(arch) or by_arch.get("all")
        if found is None:
            die(
                f"{self.path}: artifact {name!r} has no entry for arch {arch!r}",
                hint=f"it has: {', '.join(by_arch)}; add an arches.{arch} entry (url, checksum) for it",
            )
        return found

    def select(self, wanted: Mapping[str, str | None], arch: str) -> list[LockEntry]:
        """Entries for the names in ``wanted`` on ``arch``, each checked against its expected version.

        A value of None means any version (e.g. a base image that a profile
        names without pinning a version itself).
        """
        return [self.entry(name, arch, version) for name, version in wanted.items()]

    def replace_entry(self, new: LockEntry) -> Lock:
        """A copy with the entry of the same name, version and arch replaced by ``new``."""
        same = (new.name, new.version, new.arch)
        if same not in [(e.name, e.version, e.arch) for e in self.entries]:
            die(f"{self.path}: no entry {new.name} {new.version} ({new.arch}) to update")
        return replace(self, entries=tuple(new if (e.name, e.version, e.arch) == same else e for e in self.entries))

    def image(self, ref: str, platform: str) -> ImageEntry:
        """The lock's entry for the container image ``ref`` on ``platform``; die naming what to do when absent."""
        for i in self.images:
            if i.ref == ref and i.platform == platform:
                return i
        known = [i.ref for i in self.images]
        hint = "add it under images: in the lock (ref, digest), or let `invoke lock --profile NAME` record it"
        if ref in known:
            hint = f"it has no {platform} entry; add one under images.{ref}.platforms"
        die(f"{self.path}: container image {ref} is not in the lock", hint=hint)

    def replace_image(self, new: ImageEntry) -> Lock:
        others = tuple(i for i in self.images if (i.ref, i.platform) != (new.ref, new.platform))
        if len(others) == len(self.images):
            return replace(self, images=(*self.images, new))
        return replace(self, images=tuple(new if (i.ref, i.platform) == (new.ref, new.platform) else i
                                          for i in self.images))  # fmt: skip
