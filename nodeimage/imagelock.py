"""`invoke lock` for container images: record the digest a registry serves for a tag, once.

A build copies images by digest and never follows a tag (see
:mod:`nodeimage.images`). The digest of a new image comes from here: the
manifest the registry (or the registry mirror) serves for the tag now, for
the profile's platform, recorded with ``digest_source: trust-on-first-use``
so that whoever reviews the lock change sees where it came from.
``--refresh`` asks again and refuses a changed digest unless the entry was
trusted on first use (then the new digest is recorded with a warning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from nodeimage.lock import TOFU, ImageEntry, Lock, load_lock, save_lock
from nodeimage.log import die, info, step, warn


def add_profile_images(lock: Lock, platform: str, refs: Sequence[str]) -> tuple[Lock, list[str]]:
    """``lock`` with an unpinned entry for each of ``refs`` it does not have yet; the refs added."""
    have = {(i.ref, i.platform) for i in lock.images}
    added = [ref for ref in refs if (ref, platform) not in have]
    for ref in added:
        lock = lock.replace_image(ImageEntry(ref, platform, None, TOFU))
    return lock, added


def lock_images(
    lock_path: Path,
    *,
    refs: Sequence[str] | None = None,
    profile_images: tuple[str, Sequence[str]] | None = None,
    registry_mirror: str | None = None,
    refresh: bool = False,
) -> list[ImageEntry]:
    """Resolve the digests the lock lacks (all selected ones with ``refresh``); save after each; return them."""
    from nodeimage.images import check_registry_mirror, resolve

    lock = load_lock(lock_path)
    if profile_images is not None:
        lock, added = add_profile_images(lock, *profile_images)
        if added:
            info(f"the profile needs {len(added)} images the lock does not list yet: {', '.join(added)}")
            save_lock(lock, lock_path)
    known = {i.ref for i in lock.images}
    unknown = sorted(set(refs or []) - known)
    if unknown:
        die(f"{lock_path}: no container image {', '.join(unknown)}", hint="the lock has: " + ", ".join(sorted(known)))
    wanted = set(refs) if refs else ({*profile_images[1]} if profile_images else known)
    selected = [i for i in lock.images if i.ref in wanted]
    todo = selected if refresh else [i for i in selected if i.digest is None]
    mirror = check_registry_mirror(registry_mirror) if registry_mirror else None
    done = []
    with step(f"lock {len(todo)} of {len(selected)} container images"):
        for entry in todo:
            digest, size = resolve(entry.ref, entry.platform, mirror)
            if entry.digest and digest != entry.digest:
                if entry.digest_source != TOFU:
                    die(
                        f"{entry.ref} ({entry.platform}): the registry now serves {digest}, the lock pins "
                        f"{entry.digest} ({entry.digest_source})",
                        hint="a published digest changed: find out why before changing the lock by hand",
                    )
                warn(f"{entry.ref} ({entry.platform}): digest changed from {entry.digest} to {digest} "
                     "(trusted on first use): review this change")  # fmt: skip
            new = replace(entry, digest=digest, size=size)
            lock = lock.replace_image(new)
            save_lock(lock, lock_path)
            info(f"{entry.ref} {entry.platform}: {digest} ({size} bytes)")
            done.append(new)
        if not todo:
            info("every selected image already has a digest (use --refresh to ask the registry again)")
    return done
