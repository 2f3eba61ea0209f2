"""A cluster's secrets, made once: the CA kubeadm signs with, a bootstrap token, the CA hash.

Giving kubeadm a CA we made ourselves (it uses ``/etc/kubernetes/pki/ca.{crt,key}``
when they exist) is what lets a worker's seed carry the discovery hash before
the control plane has ever booted. Everything lives in one cluster directory
(mode 0700, files 0600) next to ``cluster.yaml``, the non-secret parameters
the secrets belong to; a directory is never reused for a different cluster.

A cluster directory is always ``<state dir>/<name>`` with ``name`` a plain
label, and never a symbolic link: whatever nodeimage writes or deletes for a
cluster (``invoke down --purge`` deletes the whole directory) stays inside it.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import secrets as pysecrets
import shutil
import string
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from nodeimage.log import die
from nodeimage.paths import DEFAULT_STATE_DIR  # where cluster directories live (re-exported)

TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
CA_VALIDITY_DAYS = 3650
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class ClusterParams:
    """What a cluster is: recorded in ``cluster.yaml``; secrets belong to exactly these values."""

    name: str
    kubernetes_version: str
    pod_cidr: str
    service_cidr: str
    control_plane_ip: str
    prefix_len: int
    endpoint: str
    # kubeadm's imageRepository (a cluster.yaml written before it was recorded means the default)
    image_repository: str = "registry.k8s.io"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClusterParams:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ClusterSecrets:
    """The CA (PEM), the bootstrap token and the CA public-key hash. ``repr`` hides the secrets."""

    ca_cert_pem: bytes
    ca_key_pem: bytes
    token: str
    ca_hash: str

    def __repr__(self) -> str:
        return f"ClusterSecrets(ca_hash={self.ca_hash!r}, token=<hidden>, ca_key=<hidden>)"


def cluster_dir(name: str, state_dir: Path | None = None) -> Path:
    """Where cluster ``name`` keeps its secrets, seeds and VM state: an absolute path inside the state dir.

    The name is a plain label (so ``../x`` is refused) and the directory may not be a symbolic link, so
    nothing done to a cluster directory can reach outside ``<state dir>/``.
    """
    validate_cluster_name(name)
    root = Path(state_dir or DEFAULT_STATE_DIR).expanduser()
    try:
        root = root.resolve()
    except OSError as exc:  # a symlink loop
        die(f"cannot use state directory {root} (--state-dir): {exc.strerror}", hint="give another --state-dir")
    if root.exists() and not root.is_dir():
        die(f"state directory {root} is not a directory (--state-dir)", hint="give a directory, e.g. build/clusters")
    directory = root / name
    if directory.is_symlink():
        die(
            f"cluster directory {directory} is a symbolic link (to {os.readlink(directory)}); "
            "nodeimage keeps a cluster's secrets only in a real directory inside the state directory",
            hint="move the cluster's directory there instead of linking it, or give the --state-dir it lives in",
        )
    if directory.exists() and not directory.is_dir():
        die(f"cluster directory {directory} is not a directory", hint="remove that file or choose another --cluster")
    return directory


def validate_cluster_name(name: str) -> None:
    if not CLUSTER_NAME_RE.match(name):
        die(
            f"invalid cluster name {name!r}",
            hint="use 1-32 lower-case letters, digits and '-', starting and ending with a letter or digit",
        )


def validate_token(token: str) -> None:
    """Die unless ``token`` has kubeadm's bootstrap token form (the message never shows it)."""
    if not TOKEN_RE.match(token):
        die(
            "invalid bootstrap token (value not shown: it is a secret)",
            hint=r"a kubeadm bootstrap token matches [a-z0-9]{6}\.[a-z0-9]{16}, e.g. abcdef.0123456789abcdef",
        )


def new_token() -> str:
    """A random bootstrap token of kubeadm's form ``[a-z0-9]{6}.[a-z0-9]{16}``."""
    pick = pysecrets.choice
    return "".join(pick(_ALPHABET) for _ in range(6)) + "." + "".join(pick(_ALPHABET) for _ in range(16))


def ca_cert_hash(cert_pem: bytes) -> str:
    """kubeadm's discovery hash: ``sha256:`` + hex SHA-256 of the certificate's DER SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def new_ca(now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A self-signed CA like kubeadm's own (CN ``kubernetes``, 10 years): (cert PEM, key PEM)."""
    now = now or datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_private(path: Path, data: bytes | str) -> None:
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)


def _read_params(directory: Path) -> ClusterParams | None:
    record = directory / "cluster.yaml"
    if not record.is_file():
        return None
    try:
        data = yaml.safe_load(record.read_text())
        if not isinstance(data, dict):
            raise TypeError(f"expected a mapping of {', '.join(f.name for f in fields(ClusterParams))}")
        return ClusterParams.from_dict(data)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError) as exc:
        die(
            f"cluster record {record} is unreadable: {exc}",
            hint="restore it from a backup; if the cluster is gone, `invoke down --cluster "
            f"{directory.name} --purge` removes its directory",
        )


def cluster_exists(directory: Path) -> bool:
    return (directory / "cluster.yaml").is_file()


def create_cluster(directory: Path, params: ClusterParams, *, token: str | None = None) -> ClusterSecrets:
    """Create the cluster's secrets in ``directory``, or return them if they exist for the same ``params``.

    An existing directory that belongs to another cluster, or to this cluster
    with other parameters, is an error and is left untouched.
    """
    existing = _read_params(directory)
    if existing is not None:
        if existing != params:
            diffs = [
                f"{f.name}: existing {getattr(existing, f.name)!r}, asked {getattr(params, f.name)!r}"
                for f in fields(ClusterParams)
                if getattr(existing, f.name) != getattr(params, f.name)
            ]
            die(
                f"{directory} already holds the secrets of cluster {existing.name!r} with other parameters "
                f"({'; '.join(diffs)}); refusing to overwrite them",
                hint="use another --cluster name, or ask for the existing cluster's values, "
                "or remove that directory (`invoke down --cluster NAME --purge`) if the cluster is gone",
            )
        secrets = load_secrets(directory)
        if token is not None and token != secrets.token:
            die(f"cluster {params.name!r} already has a different bootstrap token", hint="drop --token-file")
        return secrets
    if directory.exists() and any(directory.iterdir()):
        die(
            f"{directory} exists and is not a nodeimage cluster directory (no cluster.yaml)",
            hint="choose another --state-dir or --cluster, or empty that directory",
        )
    if token is not None:
        validate_token(token)

    cert_pem, key_pem = new_ca()
    secrets = ClusterSecrets(cert_pem, key_pem, token or new_token(), ca_cert_hash(cert_pem))
    if not directory.parent.exists():
        directory.parent.mkdir(parents=True, mode=0o700)
    # Built aside and renamed into place: a cluster directory is complete or absent.
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        (tmp / "pki").mkdir(mode=0o700)
        _write_private(tmp / "pki" / "ca.crt", cert_pem)
        _write_private(tmp / "pki" / "ca.key", key_pem)
        _write_private(tmp / "token", secrets.token + "\n")
        _write_private(tmp / "ca-cert-hash", secrets.ca_hash + "\n")
        _write_private(tmp / "cluster.yaml", yaml.safe_dump(params.to_dict(), sort_keys=False))
        tmp.chmod(0o700)
        if directory.exists():
            directory.rmdir()  # empty, checked above
        os.rename(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return secrets


def load_cluster(directory: Path) -> tuple[ClusterParams, ClusterSecrets]:
    """The parameters and secrets of an existing cluster; dies when there is none."""
    params = _read_params(directory)
    if params is None:
        die(
            f"no cluster at {directory}",
            hint="render the control-plane seed first (`invoke seed --role control-plane ...`): it creates the cluster",
        )
    return params, load_secrets(directory)


def load_secrets(directory: Path) -> ClusterSecrets:
    try:
        cert = (directory / "pki" / "ca.crt").read_bytes()
        key = (directory / "pki" / "ca.key").read_bytes()
        token = (directory / "token").read_text().strip()
    except FileNotFoundError as exc:
        die(f"cluster directory {directory} is incomplete: {exc.filename} is missing", hint="remove it and start over")
    except (OSError, UnicodeDecodeError) as exc:
        die(f"cannot read the secrets in {directory}: {exc}", hint="check that directory's files and permissions")
    validate_token(token)
    return ClusterSecrets(cert, key, token, ca_cert_hash(cert))
