"""The current stack: Kubernetes 1.36, CRI-O 1.36 (crun default, Kata 3 per pod), cgroup v2.

The stack a cluster started today, or one Cluster API (v1.14 supports
workload clusters 1.31-1.36) runs. It differs from the classic stack in
data only (nodeimage/stacks/__init__.py): kubeadm's ``kubeadm.k8s.io/v1beta4``
API, a KubeletConfiguration carrying the cgroup driver and the CRI endpoint
(the kubelet has no ``--container-runtime`` flag since 1.27), CRI-O
installed from its release bundle and configured through drop-ins, the Kata 3
shim as a ``vm`` handler, RuntimeClass ``node.k8s.io/v1`` and the unified
cgroup hierarchy. Each fact is cited beside the code that relies on it.

Sources, abbreviated:
  K36  kubernetes/kubernetes, release-1.36 era (commit 008b3652, whose CHANGELOG-1.36.md has the v1.36.0
       section; the v1.36.4 tag itself is not readable here) and the staging repositories at v0.36.3
  C36  cri-o/cri-o@v1.36.3
  PKG  cri-o/packaging@bead4ec8 (the bundle scripts as of the v1.36.3 tag)
  R3   kata-containers/kata-containers@3.32.0
  REL  kubernetes/release@f618b2a3 cmd/krel/templates/latest (the kubelet unit and kubeadm drop-in)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nodeimage.stacks import (
    CRI_ENDPOINT,
    CRI_SOCKET,
    KATA_LABEL,
    File,
    Install,
    KataHandler,
    Settings,
    Stack,
    join_lines,
    register,
)

if TYPE_CHECKING:
    from nodeimage.nodespec import NodeSpec
    from nodeimage.secrets import ClusterParams, ClusterSecrets

BINDIR = "/usr/local/bin"
# PKG templates/latest/cri-o/bundle/install, with its defaults (DESTDIR="", PREFIX=/usr/local, dpkg present):
LIBEXEC_CRIO = "/usr/libexec/crio"  # LIBEXEC_CRIO_DIR: conmon, conmonrs, crun, runc, crio-credential-provider
UNITDIR = "/usr/local/lib/systemd/system"  # SYSTEMDDIR=$PREFIX/lib/systemd/system (not Fedora CoreOS/RHCOS)
OCIDIR = "/usr/local/share/oci-umount/oci-umount.d"
MANDIR = "/usr/local/share/man"
DROPIN_DIR = "/etc/crio/crio.conf.d"  # C36 pkg/config/config_unix.go: CrioConfigDropInPath
BUNDLE = "cri-o-bundle"  # lock artifact: cri-o.<arch>.<tag>.tar.gz, top directory cri-o/ (PKG scripts/bundle/build)
BUNDLE_TOP = "cri-o"
KATA = "kata-containers-static"  # lock artifact: kata-static-<version>-<arch>.tar.zst, members ./opt/kata/...
KATA_DEFAULTS = "/opt/kata/share/defaults/kata-containers"
API_PORT = 6443
TOKEN_TTL = "24h0m0s"
# K36 cmd/kubeadm/app/constants/constants.go is not readable at v1.36.4 here; the values are CHANGELOG-1.36.md
# v1.36.0 (K36 commit 008b3652): "Updated the pause image to v3.10.2" (#138199), "Updated CoreDNS to v1.14.2"
# (#137605), "Updated etcd images to v3.6.8" (#137107, tag form 3.6.8-0), and what `kubeadm config images
# list` prints for v1.36.4 (observed in several independent install notes). The later master bumps to
# 3.6.10/3.6.11 (#138392, #138746) are not known to be in any v1.36 patch release.
PAUSE_VERSION = "3.10.2"
COREDNS_VERSION = "v1.14.2"
ETCD_VERSION = "3.6.8-0"
# K36 cmd/kubeadm/app/images/images.go GetDNSImage: only the default repository gets the "/coredns" path.
DEFAULT_IMAGE_REPOSITORY = "registry.k8s.io"
KATA_MODULES = ("kvm", "vhost", "vhost_net", "vhost_vsock")

# R3 tools/packaging/kata-deploy/binary/src/runtime/crio.rs write_crio_runtime_config: handler kata-<shim> with the
# Go shim, runtime_type "vm", runtime_root /run/vc, runtime_config_path and privileged_without_host_devices. The
# config is the bundle's own configuration-qemu.toml: kata-deploy first copies it to runtimes/qemu/ (install.rs
# setup_runtime_directory) to give each shim a config.d; nodeimage installs one shim and needs no copy.
KATA_HANDLER = KataHandler(
    name="kata-qemu",
    runtime_path="/opt/kata/bin/containerd-shim-kata-v2",
    runtime_type="vm",
    runtime_root="/run/vc",
    runtime_config_path=f"{KATA_DEFAULTS}/configuration-qemu.toml",
)

# Read after the bundle's 10-crio.conf (C36 pkg/config/config.go UpdateFromPath: every file of the drop-in
# directory, in lexical order, later files win; a [crio.runtime.runtimes.X] table replaces handler X whole).
CRIO_DROPIN = """\
# {path}: written by nodeimage for CRI-O {crio} ({stack} stack).
# The bundle's 10-crio.conf (cri-o/packaging templates/latest/cri-o/bundle/10-crio.conf) sets crun as the
# default runtime, the crun and runc handlers (conmon as their monitor) and /etc/crio/policy.json; this file
# adds what the node needs; Kata's handler is in {kata_file}.

[crio]
# The store the image's baked container images are in (nodeimage.images: overlay under /var/lib/containers).
root = "/var/lib/containers/storage"
runroot = "/var/run/containers/storage"
storage_driver = "overlay"

[crio.api]
listen = "{socket}"

[crio.runtime]
# The kubelet's cgroupDriver (KubeletConfiguration); also CRI-O 1.36's default on a systemd host.
cgroup_manager = "systemd"
# With the systemd manager: "pod" or a *.slice (cri-o v1.36.3 pkg/config/config.go TranslateMonitorFields).
conmon_cgroup = "pod"

[crio.image]
# The pause image kubeadm 1.36 uses (its PauseVersion), from the profile's registry: a mismatch makes kubeadm
# warn and the node keep two pause images.
pause_image = "{pause}"

[crio.network]
# The CNI writes its configuration here; the bundle's bridge configuration is not installed.
network_dir = "/etc/cni/net.d/"
plugin_dirs = [
	"/opt/cni/bin/",
]
"""

KATA_DROPIN = """\
# {path}: written by nodeimage.
# Kata Containers {kata} as a second runtime, selected by the RuntimeClass whose handler is "{name}", as
# kata-deploy writes it for CRI-O (kata-containers tools/packaging/kata-deploy/binary/src/runtime/crio.rs).
{table}"""

# REL kubelet/kubelet.service, with the binary in BINDIR and a condition: the kubelet stays inactive (not
# crash-looping) until kubeadm init/join writes its configuration, then kubeadm (re)starts it.
KUBELET_UNIT = f"""\
# nodeimage: the kubelet unit of the upstream packages (kubernetes/release cmd/krel/templates/latest),
# with the binary in {BINDIR}.
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target crio.service
After=network-online.target crio.service
ConditionPathExists=/var/lib/kubelet/config.yaml

[Service]
ExecStart={BINDIR}/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
"""

# REL kubeadm/10-kubeadm.conf with the deb packages' /etc/default/kubelet (kubeadm.spec's sed) and BINDIR. No flags
# for the CRI: kubeadm writes the endpoint into the kubelet's configuration (NodeLocalCRISocket, GA in 1.36).
KUBEADM_DROPIN = f"""\
# Note: This dropin only works with kubeadm and kubelet v1.11+
# (upstream kubeadm drop-in; nodeimage moved the binary to {BINDIR})
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
# This is a file that "kubeadm init" and "kubeadm join" generates at runtime, populating the KUBELET_KUBEADM_ARGS variable dynamically
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort. Preferably, the user should use
# the .NodeRegistration.KubeletExtraArgs object in the configuration files instead. KUBELET_EXTRA_ARGS should be sourced from this file.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart={BINDIR}/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
"""  # noqa: E501

# kubernetes-sigs/cri-tools@v1.36.0 pkg/common/file.go: runtime-endpoint, image-endpoint, timeout (whole seconds),
# debug, pull-image-on-create, disable-pull-on-run; any other key is an error.
CRICTL_YAML = f"""\
# nodeimage: crictl talks to CRI-O.
runtime-endpoint: {CRI_ENDPOINT}
image-endpoint: {CRI_ENDPOINT}
timeout: 10
debug: false
"""


class Current(Stack):
    """Kubernetes 1.36 with CRI-O 1.36 (its release bundle), crun and Kata 3."""

    def installs(self, s: Settings) -> list[Install]:
        top = BUNDLE_TOP
        ops = [Install("file", tool, "", f"{BINDIR}/{tool}") for tool in ("kubelet", "kubeadm", "kubectl")]
        # What the bundle's install script puts on a node (PKG templates/latest/cri-o/bundle/install). Not from
        # the bundle: crictl and the CNI plugins, whose own pinned archives (the same versions: PKG
        # templates/latest/cri-o/bundle/versions) are checked against their own digests; the disabled bridge
        # configuration (readiness must mean the CNI is up); the SELinux labels (no SELinux on these images).
        ops += [Install("file", BUNDLE, f"{top}/bin/{b}", f"{BINDIR}/{b}") for b in ("crio", "pinns")]
        ops += [
            Install("file", BUNDLE, f"{top}/bin/{b}", f"{LIBEXEC_CRIO}/{b}")
            for b in ("conmon", "conmonrs", "crun", "runc", "crio-credential-provider")
        ]
        ops += [
            Install("file", BUNDLE, f"{top}/etc/crio-umount.conf", f"{OCIDIR}/crio-umount.conf", 0o644),
            # The script seds "sysconfig/crio" to "default/crio" in it under dpkg: that only changes its comment.
            Install("file", BUNDLE, f"{top}/etc/crio", "/etc/default/crio", 0o644),
            Install("file", BUNDLE, f"{top}/contrib/policy.json", "/etc/crio/policy.json", 0o644),
            # Installed as shipped: its seds only rewrite /usr/bin, /usr/libexec and /etc/crio to themselves
            # when DESTDIR is empty and the prefixes are the defaults.
            Install("file", BUNDLE, f"{top}/etc/10-crio.conf", f"{DROPIN_DIR}/10-crio.conf", 0o644),
            Install("file", BUNDLE, f"{top}/contrib/crio.service", f"{UNITDIR}/crio.service", 0o644),
            Install(
                "file", BUNDLE, f"{top}/contrib/registries.conf", "/etc/containers/registries.conf.d/registries.conf",
                0o644,
            ),
            Install("file", BUNDLE, f"{top}/man/crio.conf.5", f"{MANDIR}/man5/crio.conf.5", 0o644),
            Install("file", BUNDLE, f"{top}/man/crio.conf.d.5", f"{MANDIR}/man5/crio.conf.d.5", 0o644),
            Install("file", BUNDLE, f"{top}/man/crio.8", f"{MANDIR}/man8/crio.8", 0o644),
        ]  # fmt: skip
        ops += [
            # R3 tools/packaging/kata-deploy/local-build/kata-deploy-merge-builds.sh: `tar --zstd -cvf ... .` from
            # the content directory, so members start ./opt/kata/.
            Install("tree", KATA, "./opt/kata", "/opt/kata"),
            # kata-runtime on PATH for first boot's `kata-runtime check` (kata-deploy links nothing into PATH).
            Install("link", KATA, "/opt/kata/bin/kata-runtime", f"{BINDIR}/kata-runtime"),
            Install("tree", "cni-plugins-1", ".", "/opt/cni/bin"),
            Install("file", "crictl-1.36", "crictl", f"{BINDIR}/crictl"),
        ]
        return ops

    def files(self, s: Settings) -> list[File]:
        crio = s.versions[BUNDLE]
        base = f"{DROPIN_DIR}/20-nodeimage.conf"
        kata_file = f"{DROPIN_DIR}/50-nodeimage-kata.conf"
        return [
            File(
                base,
                CRIO_DROPIN.format(
                    path=base, crio=crio, stack=self.name, kata_file=kata_file, socket=CRI_SOCKET,
                    pause=f"{s.image_repository}/pause:{PAUSE_VERSION}",
                ),
            ),  # fmt: skip
            File(
                kata_file,
                KATA_DROPIN.format(path=kata_file, kata=s.versions[KATA], name=self.kata.name, table=self.kata.toml()),
            ),
            File("/etc/crictl.yaml", CRICTL_YAML),
            File("/etc/systemd/system/kubelet.service", KUBELET_UNIT),
            File("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN),
            File(
                "/etc/modules-load.d/nodeimage-kata.conf",
                "# nodeimage: what `kata-runtime check` wants loaded (kata-containers 3.32.0\n"
                "# src/runtime/cmd/kata-runtime/kata-check_amd64.go; the qemu configuration needs /dev/vhost-vsock:\n"
                "# src/runtime/pkg/katautils/config.go). kvm_intel/kvm_amd load by CPU modalias.\n"
                + join_lines(KATA_MODULES),
            ),
        ]

    def images(self, s: Settings) -> list[str]:
        """K36 cmd/kubeadm/app/images/images.go GetControlPlaneImages: the control plane, kube-proxy, CoreDNS,
        pause, then etcd; CoreDNS under coredns/ only in the default repository (GetDNSImage)."""
        repo, tag = s.image_repository, s.kubernetes_version
        control = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
        dns_repo = f"{repo}/coredns" if repo == DEFAULT_IMAGE_REPOSITORY else repo
        return [
            *(f"{repo}/{c}:{tag}" for c in control),
            f"{dns_repo}/coredns:{COREDNS_VERSION}",
            f"{repo}/pause:{PAUSE_VERSION}",
            f"{repo}/etcd:{ETCD_VERSION}",
        ]

    def kubeadm_documents(
        self, node: NodeSpec, params: ClusterParams, secrets: ClusterSecrets, *, kata: bool, image_repository: str
    ) -> list[dict[str, Any]]:
        """kubeadm.k8s.io/v1beta4 (K36 cmd/kubeadm/app/apis/kubeadm/v1beta4/types.go): kubeletExtraArgs is a list
        of name/value pairs, the discovery timeout lives in ``timeouts``; the KubeletConfiguration
        (kubernetes/kubelet@v0.36.3 config/v1beta1/types.go) carries the cgroup driver and the CRI endpoint."""
        from nodeimage.nodespec import node_interface

        ip = str(node_interface(node, params).ip)
        kubelet_args = [{"name": "node-ip", "value": ip}]
        if kata:
            kubelet_args.append({"name": "node-labels", "value": KATA_LABEL})
        registration = {"name": node.name, "criSocket": self.cri_socket, "kubeletExtraArgs": kubelet_args}
        if node.role == "worker":
            return [
                {
                    "apiVersion": self.kubeadm_api,
                    "kind": "JoinConfiguration",
                    "nodeRegistration": registration,
                    "discovery": {
                        "bootstrapToken": {
                            "token": secrets.token,
                            "apiServerEndpoint": params.endpoint,
                            "caCertHashes": [secrets.ca_hash],
                        },
                    },
                    "timeouts": {"discovery": "10m0s"},
                }
            ]
        return [
            {
                "apiVersion": self.kubeadm_api,
                "kind": "InitConfiguration",
                "bootstrapTokens": [
                    {
                        "token": secrets.token,
                        "description": "nodeimage bootstrap token for the cluster's workers",
                        "ttl": TOKEN_TTL,
                        "usages": ["signing", "authentication"],
                        "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                    }
                ],
                "nodeRegistration": registration,
                "localAPIEndpoint": {"advertiseAddress": ip, "bindPort": API_PORT},
            },
            {
                "apiVersion": self.kubeadm_api,
                "kind": "ClusterConfiguration",
                "clusterName": params.name,
                "kubernetesVersion": params.kubernetes_version,
                "controlPlaneEndpoint": params.endpoint,
                "imageRepository": image_repository,
                "networking": {"podSubnet": params.pod_cidr, "serviceSubnet": params.service_cidr},
                # 127.0.0.1: `invoke up` forwards a local port to the API server for kubectl on the host
                "apiServer": {"certSANs": ["127.0.0.1"]},
            },
            {
                "apiVersion": self.kubelet_api,
                "kind": "KubeletConfiguration",
                "cgroupDriver": "systemd",
                "containerRuntimeEndpoint": CRI_ENDPOINT,
            },
        ]


K8S_1_36 = register(
    Current(
        name="k8s-1.36",
        description="Kubernetes 1.36, CRI-O 1.36 (crun default, Kata 3 per pod), cgroup v2",
        kubernetes_minor=36,
        # K36: v1beta4 since 1.31 (v1beta3 still read, with a deprecation warning); Cluster API v1.14 renders
        # v1beta4 for 1.31+ (kubernetes-sigs/cluster-api@v1.14.0 bootstrap/kubeadm/pkg/types/utils.go).
        kubeadm_api="kubeadm.k8s.io/v1beta4",
        runtime_class_api="node.k8s.io/v1",  # GA since 1.20 (kubernetes/api@v0.36.3 node/v1/types.go)
        kata=KATA_HANDLER,
        # R3 src/runtime/cmd/kata-runtime/kata-check.go: command "check" (alias "kata-check"), --no-network-checks.
        kata_check=("kata-runtime", "check", "--no-network-checks"),
        # A unix:// URL: for a bare path kubeadm warns "Usage of CRI endpoints without URL scheme is deprecated"
        # and prepends unix:// (cmd/kubeadm/app/util/config/initconfiguration.go; seen in kubeadm 1.24-1.33 logs).
        cri_socket=CRI_ENDPOINT,
        # kubelet 1.36 refuses cgroup v1 unless failCgroupV1 is false (kubernetes/kubelet@v0.36.3
        # config/v1beta1/types.go failCgroupV1, "Default: true" since 1.35).
        cgroup="v2",
        # kube-proxy of this version detects the iptables backend itself.
        iptables="default",
        artifacts=("kubelet", "kubeadm", "kubectl", BUNDLE, KATA, "cni-plugins-1", "crictl-1.36"),
        # zstd: GNU tar unpacks the Kata 3 bundle (.tar.zst) through it.
        packages=("zstd",),
    )
)
