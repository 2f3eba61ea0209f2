# --- nodeimage stand-in: kubelet (tests/standins/programs/kubelet.py) --------------------------
# The kubelet's flags and start-up checks that a node image decides, read in kubernetes
# release-1.17 (K17: cmd/kubelet/app, pkg/kubelet/cm; see tests/standins/README.md for the copies
# read) and 1.36 (K36: kubernetes/kubelet and component-base at v0.36.3, CHANGELOG-1.36.md, and the wording 1.35/1.36
# kubelets print where the in-tree source at v1.36 was not readable). It exits the way the kubelet exits
# (1.17: klog.Fatal, status 255; 1.36: component-base cli.Run, status 1).

# The program is common.py followed by this file, without the import from common (make_standins.py).
import json
import os
import socket
import sys
import time

from common import VERSION, cri_request, last, load_yaml_docs, minor, note, p, parse_flags, read, vee, wait_for_sigterm

# K17 cmd/kubelet/app/options/options.go:335-563, pkg/kubelet/config/flags.go:82-105, globalflags*.go
FLAGS_17 = set(
    [
        "config",
        "kubeconfig",
        "bootstrap-kubeconfig",
        "chaos-chance",
        "root-dir",
        "dynamic-config-dir",
        "hostname-override",
        "node-ip",
        "provider-id",
        "cert-dir",
        "cloud-provider",
        "cloud-config",
        "register-with-taints",
        "experimental-mounter-path",
        "container-runtime-endpoint",
        "image-service-endpoint",
        "node-labels",
        "volume-plugin-dir",
        "lock-file",
        "seccomp-profile-root",
        "bootstrap-checkpoint-path",
        "node-status-max-images",
        "experimental-bootstrap-kubeconfig",
        "minimum-container-ttl-duration",
        "maximum-dead-containers-per-container",
        "maximum-dead-containers",
        "master-service-namespace",
        "non-masquerade-cidr",
        "container-runtime",
        "runtime-cgroups",
        "docker-endpoint",
        "image-pull-progress-deadline",
        "network-plugin",
        "cni-conf-dir",
        "cni-bin-dir",
        "cni-cache-dir",
        "network-plugin-mtu",
        "pod-infra-container-image",
        "experimental-dockershim-root-directory",
        "pod-manifest-path",
        "sync-frequency",
        "file-check-frequency",
        "http-check-frequency",
        "manifest-url",
        "manifest-url-header",
        "address",
        "port",
        "read-only-port",
        "authentication-token-webhook-cache-ttl",
        "client-ca-file",
        "authorization-mode",
        "authorization-webhook-cache-authorized-ttl",
        "authorization-webhook-cache-unauthorized-ttl",
        "tls-cert-file",
        "tls-private-key-file",
        "tls-cipher-suites",
        "tls-min-version",
        "registry-qps",
        "registry-burst",
        "event-qps",
        "event-burst",
        "healthz-port",
        "healthz-bind-address",
        "oom-score-adj",
        "cluster-domain",
        "cluster-dns",
        "streaming-connection-idle-timeout",
        "node-status-update-frequency",
        "minimum-image-ttl-duration",
        "image-gc-high-threshold",
        "image-gc-low-threshold",
        "volume-stats-agg-period",
        "feature-gates",
        "kubelet-cgroups",
        "system-cgroups",
        "cgroup-driver",
        "cgroup-root",
        "cpu-manager-policy",
        "cpu-manager-reconcile-period",
        "qos-reserved",
        "topology-manager-policy",
        "runtime-request-timeout",
        "hairpin-mode",
        "max-pods",
        "pod-cidr",
        "pod-max-pids",
        "resolv-conf",
        "cpu-cfs-quota-period",
        "iptables-masquerade-bit",
        "iptables-drop-bit",
        "container-log-max-size",
        "container-log-max-files",
        "allowed-unsafe-sysctls",
        "max-open-files",
        "kube-api-content-type",
        "kube-api-qps",
        "kube-api-burst",
        "eviction-hard",
        "eviction-soft",
        "eviction-soft-grace-period",
        "eviction-pressure-transition-period",
        "eviction-max-pod-grace-period",
        "eviction-minimum-reclaim",
        "pods-per-core",
        "reserved-cpus",
        "system-reserved",
        "kube-reserved",
        "enforce-node-allocatable",
        "system-reserved-cgroup",
        "kube-reserved-cgroup",
        "log-dir",
        "log-file",
        "log-file-max-size",
        "stderrthreshold",
        "v",
        "vmodule",
        "log-backtrace-at",
        "docker-root",
        "housekeeping-interval",
        "azure-container-registry-config",
        "log-flush-frequency",
    ]
)
BOOLS_17 = set(
    [
        "really-crash-for-testing",
        "runonce",
        "enable-server",
        "register-node",
        "experimental-kernel-memcg-notification",
        "experimental-check-node-capabilities-before-mount",
        "experimental-allocatable-ignore-eviction",
        "exit-on-lock-contention",
        "register-schedulable",
        "keep-terminated-pod-volumes",
        "enable-cadvisor-json-endpoints",
        "redirect-container-streaming",
        "experimental-dockershim",
        "fail-swap-on",
        "anonymous-auth",
        "authentication-token-webhook",
        "rotate-server-certificates",
        "rotate-certificates",
        "enable-debugging-handlers",
        "contention-profiling",
        "cgroups-per-qos",
        "cpu-cfs-quota",
        "enable-controller-attach-detach",
        "make-iptables-util-chains",
        "serialize-image-pulls",
        "protect-kernel-defaults",
        "logtostderr",
        "alsologtostderr",
        "add-dir-header",
        "skip-headers",
        "skip-log-headers",
        "help",
        "version",
        "docker-only",
        "enable-load-reader",
        "log-cadvisor-usage",
        "storage-driver-secure",
    ]
)
# K36 (v1.36): cmd/kubelet/app/options/options.go at v1.36 is not readable here, so this is a subset: the flags
# kubeadm 1.36 writes (kubeadm-flags.env: kubeletExtraArgs, --hostname-override), the unit's (REL
# 10-kubeadm.conf: --bootstrap-kubeconfig, --kubeconfig, --config) and the deprecated config flags 1.36 still
# accepts (CHANGELOG-1.36 #136846 defers their removal to 1.37). A flag of 1.36 outside this list is refused too:
# stricter than upstream. Not in 1.36, and refused as unknown: --container-runtime (removed in 1.27),
# --pod-infra-container-image (1.35, kubernetes PR #133779), the dockershim/CNI flags (--network-plugin,
# --cni-bin-dir, --cni-conf-dir: 1.24).
FLAGS_36 = set(
    [
        "config",
        "config-dir",
        "kubeconfig",
        "bootstrap-kubeconfig",
        "root-dir",
        "cert-dir",
        "hostname-override",
        "node-ip",
        "provider-id",
        "cloud-provider",
        "node-labels",
        "register-with-taints",
        "lock-file",
        "v",
        "vmodule",
        "log-flush-frequency",
        "feature-gates",
        # deprecated config flags, still parsed in 1.36
        "container-runtime-endpoint",
        "image-service-endpoint",
        "cgroup-driver",
        "runtime-request-timeout",
        "runtime-cgroups",
        "kubelet-cgroups",
        "system-cgroups",
        "cgroup-root",
        "pod-manifest-path",
        "cluster-dns",
        "cluster-domain",
        "max-pods",
        "eviction-hard",
        "kube-reserved",
        "system-reserved",
        "volume-plugin-dir",
        "tls-cert-file",
        "tls-private-key-file",
        "address",
        "port",
        "read-only-port",
        "healthz-port",
    ]
)
BOOLS_36 = {"help", "version", "exit-on-lock-contention", "register-node", "fail-swap-on", "fail-cgroupv1",
            "rotate-certificates", "cgroups-per-qos", "anonymous-auth", "protect-kernel-defaults"}  # fmt: skip

# K17 pkg/kubelet/apis/well_known_labels.go:39-84
ALLOWED_LABELS = {
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
}  # fmt: skip


def fatal(message):
    if minor() < 20:
        print(f"F0000 00:00:00.000000 1 server.go:0] {message}", file=sys.stderr, flush=True)
        sys.exit(255)  # klog.Fatal (K17 vendor/k8s.io/klog/klog.go:838)
    # K36: the command returns the error and component-base's cli.Run logs it and exits 1
    # (kubernetes/component-base@v0.36.3 cli/run.go:43-76; cmd/kubelet/kubelet.go: os.Exit(cli.Run(command)))
    print(f'E0000 00:00:00.000000 1 run.go:72] "command failed" err={json.dumps(message)}', file=sys.stderr,
          flush=True)  # fmt: skip
    sys.exit(1)


def check_labels(value):
    """K17 cmd/kubelet/app/options/options.go:227-258: kubernetes.io/k8s.io labels outside the allowed set are fatal."""
    bad = []
    for pair in filter(None, value.split(",")):
        key = pair.split("=", 1)[0]
        prefix = key.split("/", 1)[0] if "/" in key else ""
        namespaced = any(prefix == d or prefix.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
        kubelet_ns = any(
            prefix == d or prefix.endswith("." + d) for d in ("kubelet.kubernetes.io", "node.kubernetes.io")
        )
        if namespaced and not kubelet_ns and key not in ALLOWED_LABELS:
            bad.append(key)
    if bad:
        fatal(
            f"unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: {sorted(bad)}\n--node-labels "
            "in the 'kubernetes.io' namespace must begin with an allowed prefix (kubelet.kubernetes.io, "
            f"node.kubernetes.io) or be in the specifically allowed set ({', '.join(sorted(ALLOWED_LABELS))})"
        )


def load_kubelet_config(path):
    """K17 pkg/kubelet/kubeletconfig/util/codec/codec.go:98-136: a wrong apiVersion or kind is fatal."""
    text = read(p(path))
    errfmt = "failed to load Kubelet config file {}, error {}"
    if text is None:
        fatal(errfmt.format(path, f"failed to read kubelet config file {path!r}, error: no such file or directory"))
    if not text.strip():
        fatal(errfmt.format(path, f"kubelet config file {path!r} was empty"))
    try:
        doc = load_yaml_docs(text)[0]
    except Exception as exc:  # noqa: BLE001 - any parse error is the kubelet's "failed to decode"
        fatal(errfmt.format(path, f"failed to decode: {exc}"))
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != "KubeletConfiguration"
        or doc.get("apiVersion") != "kubelet.config.k8s.io/v1beta1"
    ):
        fatal(errfmt.format(path, "failed to decode: no kind/apiVersion KubeletConfiguration/"
                                  "kubelet.config.k8s.io/v1beta1 in it"))  # fmt: skip
    return doc


def cgroup_v2():
    return os.path.exists(p("/sys/fs/cgroup/cgroup.controllers"))


def swap_on():
    lines = (read(p("/proc/swaps"), "") or "").strip().splitlines()
    return lines[1:] if len(lines) > 1 else []


def main(args):
    old = minor() < 20
    takes, bools = (FLAGS_17, BOOLS_17) if old else (FLAGS_36, BOOLS_36)
    if "--version" in args or "--version=true" in args:
        print("Kubernetes " + vee(VERSION))  # kubeadm's KubeletVersion check parses this line
        return 0
    flags, positionals, unknown = parse_flags(args, takes, booleans=bools)
    if unknown:
        flag = unknown[0].split("=", 1)[0]
        if old:
            print(f"Usage:\n  kubelet [flags]\n\nFlags:\n  (nodeimage stand-in for kubelet {VERSION})", file=sys.stderr)
            fatal(f"unknown flag: {flag}")  # K17 server.go:156-159 (pflag: "unknown flag: --%s")
        # K36 cmd/kubelet/app/server.go parses the flags itself (as observed from 1.35/1.36 kubelets: kubeadm issue
        # 3281, "failed to parse kubelet flag: unknown flag: --pod-infra-container-image")
        fatal(f"failed to parse kubelet flag: unknown flag: {flag}")
    if positionals:
        fatal(f"unknown command: {positionals[0]}")
    runtime = last(flags, "container-runtime", "docker")
    if old and runtime not in ("docker", "remote"):
        fatal(f'failed to run Kubelet: unsupported CRI runtime: "{runtime}"')  # K17 pkg/kubelet/kubelet.go:626-662
    check_labels(",".join(flags.get("node-labels", [])))
    conf = load_kubelet_config(last(flags, "config")) if last(flags, "config") else {}
    fail_swap = str(last(flags, "fail-swap-on", conf.get("failSwapOn", True))).lower() != "false"
    # K17 pkg/kubelet/cm/container_manager_linux.go:206-219; K36 keeps failSwapOn "Default: true"
    # (kubernetes/kubelet@v0.36.3 config/v1beta1/types.go:666-669; the 1.36 wording was not read: 1.17's is used)
    if fail_swap and swap_on():
        fatal(
            "failed to run Kubelet: running with swap on is not supported, please disable swap! or set "
            f"--fail-swap-on flag to false. /proc/swaps contained: {swap_on()}"
        )
    fail_v1 = str(last(flags, "fail-cgroupv1", conf.get("failCgroupV1", True))).lower() != "false"
    if not old and not cgroup_v2() and fail_v1:
        # kubernetes/kubelet@v0.36.3 config/v1beta1/types.go:951-957 failCgroupV1 "Default: true" (false before 1.35);
        # K36 pkg/kubelet/apis/config/validation/validation_linux.go validateKubeletOSConfiguration; the wording is
        # what 1.36 kubelets print (kindest/node v1.36.1)
        fatal("failed to validate kubelet configuration, error: kubelet is configured to not run on a host using "
              "cgroup v1. cgroup v1 support is unsupported and will be removed in a future release, path: "
              "&TypeMeta{Kind:,APIVersion:,}")  # fmt: skip
    endpoint = (
        last(flags, "container-runtime-endpoint")
        or conf.get("containerRuntimeEndpoint")
        # 1.17: dockershim; 1.36: containerd's socket, the v1beta1 default since 1.27 (K36
        # pkg/kubelet/apis/config/v1beta1/defaults.go, not read here): a node without the setting finds no CRI-O
        or ("unix:///var/run/dockershim.sock" if old else "unix:///run/containerd/containerd.sock")
    )
    # The runtime must answer before the container manager starts (K17 pkg/kubelet/kubelet.go:1362-1382, 2165-2200:
    # 1.17 waits). 1.36 validates the CRI v1 API of the endpoint at start and exits when nothing answers (the
    # message of 1.2x-1.36 kubelets: "validate service connection: validate CRI v1 runtime API for endpoint"),
    # and systemd restarts it; the stand-in gives the runtime NODEIMAGE_STANDIN_CRI_WAIT seconds (default 20).
    wait = 60 if old else float(os.environ.get("NODEIMAGE_STANDIN_CRI_WAIT", "20"))
    deadline = time.time() + wait
    while True:
        try:
            status = cri_request(endpoint, "INFO", timeout=5)
            if status.get("status"):
                break
        except (OSError, ValueError) as exc:
            why = exc
        else:
            why = "no runtime status"
        if time.time() > deadline:
            if not old:
                fatal(f"failed to run Kubelet: validate service connection: validate CRI v1 runtime API for endpoint "
                      f"{json.dumps(endpoint)}: rpc error: code = Unavailable desc = connection error: "
                      f"{why}")  # fmt: skip
            print(f"E0000 container runtime is not ready: {endpoint} does not answer", file=sys.stderr)
            deadline = time.time() + wait
        time.sleep(min(2, max(wait / 4, 0.1)))
    if old and cgroup_v2():  # K17 pkg/kubelet/cm/container_manager_linux.go:149-197: only "cgroup" (v1) mounts count
        fatal("Failed to start ContainerManager system validation failed - Following Cgroup subsystem not mounted: "
              "[cpu cpuacct cpuset memory]")  # fmt: skip
    note("kubelet-started.log", json.dumps({"endpoint": endpoint, "cgroupDriver": last(
        flags, "cgroup-driver", conf.get("cgroupDriver", "cgroupfs")), "args": args}))  # fmt: skip
    run_static_pods(conf.get("staticPodPath") or last(flags, "pod-manifest-path"))
    wait_for_sigterm()
    return 0


def run_static_pods(manifests):
    """The kubelet runs the static pods kubeadm wrote; of the API server's this stand-in keeps only what a
    joining node sees of it: its port accepts connections (the manifest's --secure-port, 6443 by default)."""
    import re
    import threading

    path = os.path.join(p(manifests or "/etc/kubernetes/manifests"), "kube-apiserver.yaml")

    def serve():
        while (text := read(path)) is None:  # the kubelet watches its manifest directory
            time.sleep(1)
        match = re.search(r"--secure-port=(\d+)", text)
        port = int(match.group(1)) if match else 6443
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", port))
        server.listen(64)
        note("kubelet-static-pods.log", f"kube-apiserver listening on :{port}")
        while True:
            conn, _ = server.accept()
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
