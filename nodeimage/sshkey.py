"""Throwaway SSH key pairs for build and test VMs (never baked into an image)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from nodeimage.fsutil import atomic_write


def generate_keypair(private_path: Path, comment: str = "nodeimage") -> str:
    """Write an ed25519 private key (OpenSSH format, 0600) and return the public key line."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    atomic_write(private_path, private, mode=0o600)
    line = f"{public.decode()} {comment}"
    atomic_write(private_path.with_name(private_path.name + ".pub"), line + "\n", mode=0o644)
    return line
