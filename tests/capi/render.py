"""Cloud-init user-data in the form Cluster API v1.14's kubeadm bootstrap provider writes it (test side only).

The product does not render Cluster API data: Cluster API does, and the image must boot from it. The e2e
and the tests need that data without a management cluster, so this module runs upstream's own templates
(copied verbatim into tests/capi/templates/ from kubernetes-sigs/cluster-api@v1.14.0,
bootstrap/kubeadm/pkg/cloudinit/*.go) under tests/capi/gotemplate.py, with the inputs Cluster API's
functions give them:

- ``init_control_plane`` is ``NewInitControlPlane`` (controlplane_init.go:60-72): certificate files first,
  then the KubeadmConfig's files; ``kubeadm init --config /run/kubeadm/kubeadm.yaml <verbosity> && <sentinel>``.
- ``join_control_plane`` is ``NewJoinControlPlane`` (controlplane_join.go:58-71) and ``join_node`` is ``NewNode``
  (node.go:51-56): ``prepare()`` (cloudinit.go:59-64) appends the files and builds
  ``kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml <verbosity>``.
- the verbosity flag is "" or ``--v N`` (bootstrap/kubeadm/reconcilers/kubeadmconfig/kubeadmconfig_controller.go
  :569-572), hence the two spaces before ``&&`` when it is unset.

What is not modelled: the controller's reconcile loop (tokens, certificate generation, discovery: the caller
passes the kubeadm documents, see tests/capi/kubeadm.py, and the certificate files), files with
``contentFrom`` or ``contentFormat: Template`` (pass resolved content), passwords from secrets, Ignition.
``disk_setup`` and ``mounts`` are passed as Go-struct dicts (field names as in api/bootstrap/kubeadm/v1beta2,
pointers as :class:`Ptr`), since nothing here needs more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.capi.gotemplate import Ptr, TemplateSet

TEMPLATES = Path(__file__).parent / "templates"
TAG = "v1.14.0"

# bootstrap/kubeadm/pkg/cloudinit/cloudinit.go:30-38
STANDARD_JOIN_COMMAND = "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml %s"
SENTINEL_FILE_COMMAND = "echo success > /run/cluster-api/bootstrap-success.complete"
CLOUD_CONFIG_HEADER = "## template: jinja\n#cloud-config\n"
SENTINEL_FILE = "/run/cluster-api/bootstrap-success.complete"
INIT_CONFIG_PATH = "/run/kubeadm/kubeadm.yaml"
JOIN_CONFIG_PATH = "/run/kubeadm/kubeadm-join-config.yaml"
PLACEHOLDER_PATH = "/run/cluster-api/placeholder"

# the sub-templates, in the order generate() parses them (cloudinit.go:66-100)
SUB_TEMPLATES = ("files", "boot_commands", "commands", "ntp", "users", "disk_setup", "fs_setup", "mounts")

# util/secret/certificates.go:46-48 (root:root, /etc/kubernetes/pki), 395-418 (cert 0640, key 0600),
# 443-457 (AsFiles order: cluster CA, etcd CA, front-proxy CA, service account key)
ROOT_OWNER = "root:root"
DEFAULT_CERTIFICATES_DIR = "/etc/kubernetes/pki"


@dataclass(frozen=True)
class File:
    """A KubeadmConfig ``files`` entry (api/bootstrap/kubeadm/v1beta2 kubeadmconfig_types.go:343-388)."""

    path: str
    content: str
    owner: str = ""
    permissions: str = ""
    encoding: str = ""  # "", "base64", "gzip", "gzip+base64"
    append: bool | None = None  # *bool: None is unset; False is still written ("append: false")

    def go(self) -> dict[str, Any]:
        return {
            "Path": self.path,
            "Owner": self.owner,
            "Permissions": self.permissions,
            "Encoding": self.encoding,
            "Append": None if self.append is None else Ptr(self.append),
            "Content": self.content,
        }


@dataclass(frozen=True)
class User:
    """A KubeadmConfig ``users`` entry (kubeadmconfig_types.go:455-523); pointer fields as None or a bool."""

    name: str
    passwd: str = ""
    gecos: str = ""
    groups: str = ""
    home_dir: str = ""
    inactive: bool | None = None
    lock_password: bool | None = None
    shell: str = ""
    primary_group: str = ""
    sudo: str = ""
    ssh_authorized_keys: tuple[str, ...] = ()

    def go(self) -> dict[str, Any]:
        def ptr(v: bool | None) -> Ptr | None:
            return None if v is None else Ptr(v)

        return {
            "Name": self.name,
            "Passwd": self.passwd,
            "Gecos": self.gecos,
            "Groups": self.groups,
            "HomeDir": self.home_dir,
            "Inactive": ptr(self.inactive),
            "LockPassword": ptr(self.lock_password),
            "Shell": self.shell,
            "PrimaryGroup": self.primary_group,
            "Sudo": self.sudo,
            "SSHAuthorizedKeys": list(self.ssh_authorized_keys),
        }


@dataclass(frozen=True)
class NTP:
    servers: tuple[str, ...] = ()
    enabled: bool | None = None

    def go(self) -> dict[str, Any]:
        return {"Servers": list(self.servers), "Enabled": None if self.enabled is None else Ptr(self.enabled)}


def certificate_files(
    *,
    cluster_ca: tuple[str, str] | None = None,
    etcd_ca: tuple[str, str] | None = None,
    front_proxy_ca: tuple[str, str] | None = None,
    service_account: tuple[str, str] | None = None,
    certificates_dir: str = DEFAULT_CERTIFICATES_DIR,
) -> list[File]:
    """The files ``Certificates.AsFiles()`` writes for (cert PEM, key PEM) pairs, in its order; a pair with an
    empty key writes the certificate only (certificates.go:395-418)."""
    names = [
        (cluster_ca, "ca.crt", "ca.key"),
        (etcd_ca, "etcd/ca.crt", "etcd/ca.key"),
        (front_proxy_ca, "front-proxy-ca.crt", "front-proxy-ca.key"),
        (service_account, "sa.pub", "sa.key"),
    ]
    out = []
    for pair, cert_name, key_name in names:
        if pair is None:
            continue
        cert, key = pair
        if cert:
            out.append(File(f"{certificates_dir}/{cert_name}", cert, owner=ROOT_OWNER, permissions="0640"))
        if key:
            out.append(File(f"{certificates_dir}/{key_name}", key, owner=ROOT_OWNER, permissions="0600"))
    return out


def template_text(name: str) -> str:
    """A template's upstream text: the file in tests/capi/templates/ without its ``#|`` header lines."""
    lines = (TEMPLATES / f"{name}.tmpl").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("#|"))


def indent(i: int, text: str) -> str:
    """templateYAMLIndent (utils.go:33-37): every line, the empty last one too, gets ``i`` spaces."""
    pad = " " * i
    return pad + ("\n" + pad).join(text.split("\n"))


# utils.go:39-58; the names: api/bootstrap/kubeadm/v1beta2/kubeadmconfig_types.go:627-639
_PARTITION_TYPES = {
    "Linux": "83",
    "LinuxSwap": "82",
    "LinuxRAID": "fd",
    "LVM": "8e",
    "Fat32": "0c",
    "NTFS": "07",
    "LinuxExtended": "85",
}


def cloud_init_partition_type(partition_type: str) -> str:
    return _PARTITION_TYPES.get(partition_type, partition_type)


FUNCS = {"Indent": indent, "CloudInitPartitionType": cloud_init_partition_type}


@cache
def _template_set(main: str) -> TemplateSet:
    return TemplateSet([*(template_text(t) for t in SUB_TEMPLATES), template_text(main)], FUNCS)


def verbosity_flag(verbosity: int | None) -> str:
    return "" if verbosity is None else f"--v {verbosity}"


def _base(
    *,
    files: Sequence[File],
    boot_commands: Sequence[str],
    pre_kubeadm_commands: Sequence[str],
    post_kubeadm_commands: Sequence[str],
    users: Sequence[User],
    ntp: NTP | None,
    disk_setup: Mapping[str, Any] | None,
    mounts: Sequence[Sequence[str]],
    verbosity: int | None,
) -> dict[str, Any]:
    """BaseUserData (cloudinit.go:40-57) as the controller fills it (kubeadmconfig_controller.go:598-623)."""
    return {
        "Header": "",
        "BootCommands": list(boot_commands),
        "PreKubeadmCommands": list(pre_kubeadm_commands),
        "PostKubeadmCommands": list(post_kubeadm_commands),
        "AdditionalFiles": [f.go() for f in files],
        "WriteFiles": [],
        "Users": [u.go() for u in users],
        # pointers in BaseUserData, set only when the KubeadmConfig defines them (controller 602-617)
        "NTP": None if ntp is None else Ptr(ntp.go()),
        "DiskSetup": None if disk_setup is None else Ptr(dict(disk_setup)),
        "Mounts": [list(m) for m in mounts],
        "ControlPlane": False,
        "KubeadmCommand": "",
        "KubeadmVerbosity": verbosity_flag(verbosity),
        "SentinelFileCommand": "",
    }


def _prepare(data: dict[str, Any]) -> None:
    """BaseUserData.prepare() (cloudinit.go:59-64)."""
    data["Header"] = CLOUD_CONFIG_HEADER
    data["WriteFiles"] = data["WriteFiles"] + data["AdditionalFiles"]
    data["KubeadmCommand"] = STANDARD_JOIN_COMMAND % data["KubeadmVerbosity"]
    data["SentinelFileCommand"] = SENTINEL_FILE_COMMAND


def init_control_plane(
    cluster_configuration: str,
    init_configuration: str,
    *,
    certificates: Sequence[File] = (),
    files: Sequence[File] = (),
    boot_commands: Sequence[str] = (),
    pre_kubeadm_commands: Sequence[str] = (),
    post_kubeadm_commands: Sequence[str] = (),
    users: Sequence[User] = (),
    ntp: NTP | None = None,
    disk_setup: Mapping[str, Any] | None = None,
    mounts: Sequence[Sequence[str]] = (),
    verbosity: int | None = None,
) -> str:
    """The first control-plane machine's user-data (NewInitControlPlane, controlplane_init.go:60-72)."""
    data = _base(files=files, boot_commands=boot_commands, pre_kubeadm_commands=pre_kubeadm_commands,
                 post_kubeadm_commands=post_kubeadm_commands, users=users, ntp=ntp, disk_setup=disk_setup,
                 mounts=mounts, verbosity=verbosity)  # fmt: skip
    data["Header"] = CLOUD_CONFIG_HEADER
    data["WriteFiles"] = [f.go() for f in certificates] + data["AdditionalFiles"]
    data["SentinelFileCommand"] = SENTINEL_FILE_COMMAND
    data["ClusterConfiguration"] = cluster_configuration
    data["InitConfiguration"] = init_configuration
    return _template_set("controlplane_init").execute(data)


def join_control_plane(
    join_configuration: str,
    *,
    certificates: Sequence[File] = (),
    files: Sequence[File] = (),
    boot_commands: Sequence[str] = (),
    pre_kubeadm_commands: Sequence[str] = (),
    post_kubeadm_commands: Sequence[str] = (),
    users: Sequence[User] = (),
    ntp: NTP | None = None,
    disk_setup: Mapping[str, Any] | None = None,
    mounts: Sequence[Sequence[str]] = (),
    verbosity: int | None = None,
) -> str:
    """Another control-plane machine's user-data (NewJoinControlPlane, controlplane_join.go:58-71)."""
    data = _base(files=files, boot_commands=boot_commands, pre_kubeadm_commands=pre_kubeadm_commands,
                 post_kubeadm_commands=post_kubeadm_commands, users=users, ntp=ntp, disk_setup=disk_setup,
                 mounts=mounts, verbosity=verbosity)  # fmt: skip
    data["WriteFiles"] = [f.go() for f in certificates]
    data["ControlPlane"] = True
    data["BootstrapToken"] = ""
    data["JoinConfiguration"] = join_configuration
    _prepare(data)
    return _template_set("controlplane_join").execute(data)


def join_node(
    join_configuration: str,
    *,
    files: Sequence[File] = (),
    boot_commands: Sequence[str] = (),
    pre_kubeadm_commands: Sequence[str] = (),
    post_kubeadm_commands: Sequence[str] = (),
    users: Sequence[User] = (),
    ntp: NTP | None = None,
    disk_setup: Mapping[str, Any] | None = None,
    mounts: Sequence[Sequence[str]] = (),
    verbosity: int | None = None,
) -> str:
    """A worker machine's user-data (NewNode, node.go:51-56): no certificate files."""
    data = _base(files=files, boot_commands=boot_commands, pre_kubeadm_commands=pre_kubeadm_commands,
                 post_kubeadm_commands=post_kubeadm_commands, users=users, ntp=ntp, disk_setup=disk_setup,
                 mounts=mounts, verbosity=verbosity)  # fmt: skip
    data["JoinConfiguration"] = join_configuration
    _prepare(data)
    data["Header"] = CLOUD_CONFIG_HEADER
    return _template_set("node").execute(data)


def strip_header(user_data: str) -> str:
    """What cloud-init hands its cloud-config handler after rendering a ``## template: jinja`` part with no
    jinja in it: the text after the first line (cloudinit/templater.py detect_template, cloud-init 22.4)."""
    first, _, rest = user_data.partition("\n")
    assert first == "## template: jinja", first
    return rest
