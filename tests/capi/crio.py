"""The whole user-data Cluster API would write for a CRI-O node booted from a nodeimage image.

One call per role, for the tests and the e2e: the kubeadm documents of tests/capi/kubeadm.py inside the
templates of tests/capi/render.py, with what a KubeadmControlPlane or KubeadmConfigTemplate for CRI-O sets
(the README's Cluster API section shows those objects): ``criSocket``, the kubelet cgroup-driver patch and
``patches.directory``. The certificates are what Cluster API's controller would generate and the caller must
supply (a CA for ``init`` and ``control-plane-join``); the token and the CA hash are what it would compute.
"""

from __future__ import annotations

from collections.abc import Sequence

from tests.capi import kubeadm, render
from tests.capi.kubeadm import CrioNode, TokenDiscovery
from tests.capi.render import File, User

ROLES = ("init", "control-plane-join", "worker")


def crio_user_data(
    role: str,
    *,
    kubernetes_version: str,
    endpoint: str,
    cluster_name: str = "capi",
    token: str = "",
    ca: tuple[str, str] | None = None,
    ca_cert_hashes: Sequence[str] = (),
    pod_subnet: str | None = None,
    service_subnet: str | None = None,
    node_name: str = "",
    kubelet_extra_args: Sequence[tuple[str, str]] = (),
    files: Sequence[File] = (),
    pre_kubeadm_commands: Sequence[str] = (),
    post_kubeadm_commands: Sequence[str] = (),
    users: Sequence[User] = (),
) -> str:
    """User-data for ``role`` (init, control-plane-join or worker); ``ca`` is the cluster CA (cert PEM, key PEM)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    node = CrioNode(name=node_name, kubelet_extra_args=tuple(kubelet_extra_args))
    all_files = [*node.files(), *files]
    common = {"files": all_files, "pre_kubeadm_commands": pre_kubeadm_commands,
              "post_kubeadm_commands": post_kubeadm_commands, "users": users}  # fmt: skip
    if role == "init":
        if ca is None:
            raise ValueError("init needs the cluster CA: Cluster API writes it to /etc/kubernetes/pki")
        cluster = kubeadm.cluster_configuration(kubernetes_version=kubernetes_version, cluster_name=cluster_name,
                                                control_plane_endpoint=endpoint, pod_subnet=pod_subnet,
                                                service_subnet=service_subnet)  # fmt: skip
        init = kubeadm.init_configuration(node.registration(), kubernetes_version=kubernetes_version,
                                          patches_directory=kubeadm.PATCHES_DIRECTORY)  # fmt: skip
        certs = render.certificate_files(cluster_ca=ca)
        return render.init_control_plane(cluster, init, certificates=certs, **common)  # type: ignore[arg-type]
    hashes = tuple(ca_cert_hashes) or ((kubeadm.ca_cert_hash(ca[0]),) if ca else ())
    join = kubeadm.join_configuration(node.registration(), TokenDiscovery(token, endpoint, hashes),
                                      kubernetes_version=kubernetes_version, control_plane=role != "worker",
                                      patches_directory=kubeadm.PATCHES_DIRECTORY)  # fmt: skip
    if role == "worker":
        return render.join_node(join, **common)  # type: ignore[arg-type]
    certs = render.certificate_files(cluster_ca=ca) if ca else []
    return render.join_control_plane(join, certificates=certs, **common)  # type: ignore[arg-type]


def make_ca(common_name: str = "kubernetes") -> tuple[str, str]:
    """A throwaway cluster CA (cert PEM, key PEM) of the kind Cluster API generates, for tests."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return cert.public_bytes(Encoding.PEM).decode(), key_pem
