"""The classic stack: Kubernetes 1.17, CRI-O 1.17 (runc default, Kata 1.x per pod), cgroup v1.

What nodeimage was made for: the hand install of kubeadm 1.17 with CRI-O as
the CRI, runc as the default OCI runtime and Kata Containers 1.12 as a second
runtime that a RuntimeClass selects. Every file below is what that hand
install put on a node, with what a reading of the pinned sources found
(tests/standins/README.md cites each rule the stand-ins hold it to).
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
UNITDIR = "/usr/local/lib/systemd/system"  # where the CRI-O bundle's `make install` puts its units
KATA_RUNTIME = "/usr/local/bin/kata-runtime"
RUNC = "/usr/sbin/runc"  # Debian's and Ubuntu's runc package
API_PORT = 6443
TOKEN_TTL = "24h0m0s"
# CRI-O's default hooks directories: a missing one makes CRI-O 1.17.2 exit at start
# (pkg/config/config.go: RuntimeConfig.Validate, "invalid hooks_dir"; cri-o issue 3179).
HOOKS_DIRS = ("/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d")
# kubeadm 1.17 cmd/kubeadm/app/constants/constants.go: PauseVersion, SupportedEtcdVersion[17], CoreDNSVersion
PAUSE_VERSION = "3.1"
ETCD_VERSION = "3.4.3-0"
COREDNS_VERSION = "1.6.5"
KATA_MODULES = ("kvm", "vhost", "vhost_net", "vhost_vsock")

CRIO_CONF = """\
# /etc/crio/crio.conf written by nodeimage for CRI-O {crio} ({stack} stack).
# runc is the default OCI runtime; Kata Containers is a second runtime that pods
# select with the RuntimeClass whose handler is "{kata}".

[crio]
root = "/var/lib/containers/storage"
runroot = "/var/run/containers/storage"
storage_driver = "overlay"
log_dir = "/var/log/crio/pods"
# Persistent, not on /run's tmpfs: crio-wipe.service removes the images of CRI-O's containers whenever the
# version file is missing (cmd/crio/wipe.go), so after every reboot a node would need a registry again.
version_file = "/var/lib/crio/version"

[crio.api]
listen = "{socket}"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
no_pivot = false
# The conmon pinned in the lock (Ubuntu 20.04 has no conmon package).
conmon = "{bindir}/conmon"
# Must be "pod" or a *.slice with the systemd cgroup manager.
conmon_cgroup = "pod"
conmon_env = [
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
]
selinux = false
seccomp_profile = ""
apparmor_profile = "crio-default-{crio_bare}"
# Must match the kubelet's --cgroup-driver=systemd.
cgroup_manager = "systemd"
default_capabilities = [
	"CHOWN",
	"DAC_OVERRIDE",
	"FSETID",
	"FOWNER",
	"NET_RAW",
	"SETGID",
	"SETUID",
	"SETPCAP",
	"NET_BIND_SERVICE",
	"SYS_CHROOT",
	"KILL",
]
# Every directory must exist: CRI-O 1.17 exits at start when one is missing.
hooks_dir = [
{hooks}]
log_level = "info"
pids_limit = 1024
log_size_max = -1
container_exits_dir = "/var/run/crio/exits"
container_attach_socket_dir = "/var/run/crio"
# Pinned namespaces (pinns), which the Kata handler needs on CRI-O 1.17.
manage_ns_lifecycle = true
namespaces_dir = "/var/run"
pinns_path = "{bindir}/pinns"

[crio.runtime.runtimes.runc]
runtime_path = "{runc}"
runtime_type = "oci"
runtime_root = "/run/runc"

# Kata 1.x as Kata's CI configures CRI-O for it (runtime_type "oci", runtime_root /run/vc; kata-containers/tests
# 1.12.1 .ci/configure_crio_for_kata.sh), with privileged_without_host_devices as kata-deploy writes it: a
# privileged Kata pod must not get every device of the host.
{kata_table}

[crio.image]
default_transport = "docker://"
pause_image = "{pause}"
pause_command = "/pause"
signature_policy = ""

[crio.network]
# The CNI writes its configuration here; CRI-O's own bridge configuration is not installed.
network_dir = "/etc/cni/net.d/"
plugin_dirs = [
	"/opt/cni/bin/",
]

[crio.metrics]
enable_metrics = false
metrics_port = 9090
"""

KUBELET_UNIT = f"""\
# nodeimage: the kubelet unit of the upstream kubeadm packages, with the binary in
# {BINDIR}. kubelet stays inactive (not crash-looping) until kubeadm init/join
# writes its configuration, then kubeadm (re)starts it.
[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/home/
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
ExecStart={BINDIR}/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_CRIO_ARGS $KUBELET_EXTRA_ARGS
"""  # noqa: E501

CRIO_DROPIN = f"""\
# nodeimage: the kubelet talks to CRI-O with the systemd cgroup driver. A variable of its
# own (used by 10-kubeadm.conf's ExecStart), so /etc/default/kubelet stays the user's.
[Service]
Environment="KUBELET_CRIO_ARGS=--container-runtime=remote --container-runtime-endpoint={CRI_ENDPOINT} --cgroup-driver=systemd --runtime-request-timeout=10m"
"""  # noqa: E501

CRICTL_YAML = f"""\
# nodeimage: crictl talks to CRI-O.
runtime-endpoint: {CRI_ENDPOINT}
image-endpoint: {CRI_ENDPOINT}
timeout: 10
debug: false
"""

REGISTRIES_CONF = """\
# nodeimage: short image names resolve on Docker Hub (containers-registries.conf(5), v2 format).
unqualified-search-registries = ["docker.io"]
"""


class Classic(Stack):
    """Kubernetes 1.17 with CRI-O 1.17, runc and Kata 1.x."""

    def installs(self, s: Settings) -> list[Install]:
        crio_top = f"crio-{s.versions['cri-o']}"
        crio_bin = f"crio-{s.machine}-static-musl"
        ops = [
            Install("file", "kubernetes-node", f"kubernetes/node/bin/{tool}", f"{BINDIR}/{tool}")
            for tool in ("kubelet", "kubeadm", "kubectl")
        ]
        ops += [
            Install("file", "cri-o", f"{crio_top}/bin/{crio_bin}", f"{BINDIR}/{crio_bin}"),
            Install("link", "cri-o", crio_bin, f"{BINDIR}/crio"),
            Install("file", "cri-o", f"{crio_top}/bin/pinns", f"{BINDIR}/pinns"),
        ]
        ops += [
            Install("file", "cri-o", f"{crio_top}/contrib/{unit}", f"{UNITDIR}/{unit}", 0o644)
            for unit in ("crio.service", "crio-wipe.service", "crio-shutdown.service")
        ]
        ops += [
            Install("file", "cri-o", f"{crio_top}/contrib/policy.json", "/etc/containers/policy.json", 0o644),
            Install("file", "conmon", "", f"{BINDIR}/conmon"),
            Install("tree", "kata-static", "./opt/kata", "/opt/kata"),
            Install("link", "kata-static", "/opt/kata/bin/kata-runtime", KATA_RUNTIME),
            Install("tree", "cni-plugins", ".", "/opt/cni/bin"),
            Install("file", "crictl", "crictl", f"{BINDIR}/crictl"),
        ]
        return ops

    def files(self, s: Settings) -> list[File]:
        crio = s.versions["cri-o"]
        conf = CRIO_CONF.format(
            crio=crio,
            crio_bare=crio.removeprefix("v"),
            stack=self.name,
            kata=self.kata_handler,
            kata_table=self.kata.toml(),
            socket=CRI_SOCKET,
            bindir=BINDIR,
            runc=RUNC,
            hooks="".join(f'\t"{d}",\n' for d in HOOKS_DIRS),
            pause=f"{s.image_repository}/pause:{PAUSE_VERSION}",
        )
        return [
            File("/etc/crio/crio.conf", conf),
            File("/etc/containers/registries.conf", REGISTRIES_CONF),
            File("/etc/crictl.yaml", CRICTL_YAML),
            File("/etc/systemd/system/kubelet.service", KUBELET_UNIT),
            File("/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", KUBEADM_DROPIN),
            File("/etc/systemd/system/kubelet.service.d/20-crio.conf", CRIO_DROPIN),
            File(
                "/etc/modules-load.d/nodeimage-kata.conf",
                "# nodeimage: what `kata-runtime kata-check` wants loaded (kvm_intel/kvm_amd load by CPU modalias)\n"
                + join_lines(KATA_MODULES),
            ),
        ]

    def directories(self, s: Settings) -> list[str]:
        return [*super().directories(s), *HOOKS_DIRS, "/var/lib/crio"]

    def images(self, s: Settings) -> list[str]:
        """kubeadm 1.17 cmd/kubeadm/app/images/images.go GetControlPlaneImages: the control plane and kube-proxy
        at the Kubernetes version, pause, etcd and CoreDNS, all from imageRepository (CoreDNS without the
        coredns/ path that 1.21 introduced)."""
        repo, tag = s.image_repository, s.kubernetes_version
        control = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
        return [
            *(f"{repo}/{c}:{tag}" for c in control),
            f"{repo}/pause:{PAUSE_VERSION}",
            f"{repo}/etcd:{ETCD_VERSION}",
            f"{repo}/coredns:{COREDNS_VERSION}",
        ]

    def kubeadm_documents(
        self, node: NodeSpec, params: ClusterParams, secrets: ClusterSecrets, *, kata: bool, image_repository: str
    ) -> list[dict[str, Any]]:
        from nodeimage.nodespec import node_interface

        ip = str(node_interface(node, params).ip)
        kubelet_args = {"node-ip": ip}
        if kata:
            kubelet_args["node-labels"] = KATA_LABEL
        registration = {"name": node.name, "criSocket": CRI_SOCKET, "kubeletExtraArgs": kubelet_args}
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
                        "timeout": "10m0s",
                    },
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
            {"apiVersion": self.kubelet_api, "kind": "KubeletConfiguration", "cgroupDriver": "systemd"},
        ]


K8S_1_17 = register(
    Classic(
        name="k8s-1.17",
        description="Kubernetes 1.17, CRI-O 1.17 (runc default, Kata 1.x per pod), cgroup v1",
        kubernetes_minor=17,
        kubeadm_api="kubeadm.k8s.io/v1beta2",
        # node.k8s.io/v1 arrived in Kubernetes 1.20; 1.17 serves v1beta1
        runtime_class_api="node.k8s.io/v1beta1",
        kata=KataHandler("kata-runtime", KATA_RUNTIME, "oci"),
        cgroup="v1",
        iptables="legacy",
        artifacts=("kubernetes-node", "cri-o", "conmon", "kata-static", "cni-plugins", "crictl"),
        # runc: the OCI runtime (the 1.17 bundle has none); xz-utils unpacks the Kata bundle
        packages=("runc", "xz-utils"),
    )
)
