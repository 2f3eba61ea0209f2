# --- nodeimage stand-in: kubeadm (tests/standins/programs/kubeadm.py) --------------------------
# kubeadm's configuration API, preflight checks and images, read in kubernetes release-1.17
# (A17: cmd/kubeadm at v1.17.x, see tests/standins/README.md for the copies read) and 1.36 (A36: the
# release-1.36-era revisions in the search index, commits 008b3652 and 13299357, CHANGELOG-1.36.md and
# kubernetes/system-validators v1.12.1; /work/audit/k8s-1.36.md says which point each comes from).
# It accepts only fields of the pinned config API (upstream warns about unknown fields and
# drops them: A17 cmd/kubeadm/app/util/config/strict/strict.go:29-58), runs the fatal preflight
# checks for a CRI node on this machine, and then does what kubeadm does to the node that the
# rest of first boot relies on (kubelet configuration and flags, kubeconfigs, the kubelet restart).

# The program is common.py followed by this file, without the import from common (make_standins.py).
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from common import (
    CRIO_SOCKET,
    LOG_DIR,
    ROOT,
    VERSION,
    cri_request,
    fail,
    last,
    load_yaml_docs,
    minor,
    note,
    p,
    parse_flags,
    read,
    systemctl,
    vee,
    which,
    write,
)

LEAF = None
ARG_LIST = [{"name": LEAF, "value": LEAF}]  # v1beta4 extraArgs / kubeletExtraArgs
TOKEN = {"token": LEAF, "description": LEAF, "ttl": LEAF, "expires": LEAF, "usages": LEAF, "groups": LEAF}
ENDPOINT = {"advertiseAddress": LEAF, "bindPort": LEAF}
HOSTPATH = [{"name": LEAF, "hostPath": LEAF, "mountPath": LEAF, "readOnly": LEAF, "pathType": LEAF}]
IMAGE_META = {"imageRepository": LEAF, "imageTag": LEAF}


def _registration(v4, v3=False):
    reg = {"name": LEAF, "criSocket": LEAF, "taints": LEAF, "kubeletExtraArgs": ARG_LIST if v4 else LEAF,
           "ignorePreflightErrors": LEAF}  # fmt: skip
    if v4 or v3:
        reg["imagePullPolicy"] = LEAF
    if v4:
        reg["imagePullSerial"] = LEAF
    return reg


def _component(v4):
    comp = {"extraArgs": ARG_LIST if v4 else LEAF, "extraVolumes": HOSTPATH}
    if v4:
        comp["extraEnvs"] = LEAF
    return comp


def schema(v4):
    """The v1beta2 (``v4`` false) or v1beta4 schema; see schema_for."""
    return schema_for("kubeadm.k8s.io/v1beta4" if v4 else "kubeadm.k8s.io/v1beta2")


def schema_for(api):
    """Every json tag of the kinds of ``api``: A17 cmd/kubeadm/app/apis/kubeadm/v1beta2/types.go; A36
    .../v1beta3/types.go (commit 008b3652, still read by 1.36 and removed in 1.37 by kubernetes PR #136016) and
    .../v1beta4/types.go (commit 13299357; /work/audit/k8s-1.36.md section 1)."""
    v3 = api == "kubeadm.k8s.io/v1beta3"
    v4 = api == "kubeadm.k8s.io/v1beta4"
    return _schema(v4, v3)


def _schema(v4, v3=False):
    discovery = {
        "bootstrapToken": {"token": LEAF, "apiServerEndpoint": LEAF, "caCertHashes": LEAF,
                           "unsafeSkipCAVerification": LEAF},
        "file": {"kubeConfigPath": LEAF},
        "tlsBootstrapToken": LEAF,
    }  # fmt: skip
    timeouts = {k: LEAF for k in ("controlPlaneComponentHealthCheck", "kubeletHealthCheck", "kubernetesAPICall",
                                  "etcdAPICall", "tlsBootstrap", "discovery", "upgradeManifests")}  # fmt: skip
    api_server = {**_component(v4), "certSANs": LEAF}
    etcd_local = {**IMAGE_META, "dataDir": LEAF, "extraArgs": ARG_LIST if v4 else LEAF, "serverCertSANs": LEAF,
                  "peerCertSANs": LEAF}  # fmt: skip
    if v4:
        etcd_local["extraEnvs"] = LEAF
    cluster = {
        "apiVersion": LEAF, "kind": LEAF,
        "etcd": {"local": etcd_local, "external": {"endpoints": LEAF, "caFile": LEAF, "certFile": LEAF,
                                                    "keyFile": LEAF}},
        "networking": {"serviceSubnet": LEAF, "podSubnet": LEAF, "dnsDomain": LEAF},
        "kubernetesVersion": LEAF, "controlPlaneEndpoint": LEAF, "apiServer": api_server,
        "controllerManager": _component(v4), "scheduler": _component(v4),
        "dns": {**IMAGE_META, **({"disabled": LEAF} if v4 else {"type": LEAF})},
        "certificatesDir": LEAF, "imageRepository": LEAF, "featureGates": LEAF, "clusterName": LEAF,
    }  # fmt: skip
    init = {"apiVersion": LEAF, "kind": LEAF, "bootstrapTokens": [TOKEN], "nodeRegistration": _registration(v4, v3),
            "localAPIEndpoint": ENDPOINT, "certificateKey": LEAF}  # fmt: skip
    join = {"apiVersion": LEAF, "kind": LEAF, "nodeRegistration": _registration(v4, v3), "caCertPath": LEAF,
            "discovery": discovery, "controlPlane": {"localAPIEndpoint": ENDPOINT, "certificateKey": LEAF}}  # fmt: skip
    if v3:  # v1beta3: the v1beta2 kinds without useHyperKubeImage and dns.type, with skipPhases and patches
        cluster["dns"] = dict(IMAGE_META)
        api_server["timeoutForControlPlane"] = LEAF
        discovery["timeout"] = LEAF
        for doc in (init, join):
            doc.update({"skipPhases": LEAF, "patches": {"directory": LEAF}})
        return {"InitConfiguration": init, "ClusterConfiguration": cluster, "JoinConfiguration": join}
    if v4:
        api_server_only = {"timeoutForControlPlane"}
        assert not api_server_only & set(api_server)
        cluster.update({"proxy": {"disabled": LEAF}, "encryptionAlgorithm": LEAF, "certificateValidityPeriod": LEAF,
                        "caCertificateValidityPeriod": LEAF})  # fmt: skip
        cluster.pop("useHyperKubeImage", None)
        for doc in (init, join):
            doc.update({"dryRun": LEAF, "skipPhases": LEAF, "patches": {"directory": LEAF}, "timeouts": timeouts})
    else:
        cluster["useHyperKubeImage"] = LEAF
        api_server["timeoutForControlPlane"] = LEAF
        discovery["timeout"] = LEAF
    return {"InitConfiguration": init, "ClusterConfiguration": cluster, "JoinConfiguration": join}


def unknown_fields(doc, spec, path=""):
    out = []
    if isinstance(spec, list):
        if not isinstance(doc, list):
            return [f"{path} (expected a list)"]
        for i, item in enumerate(doc):
            out += unknown_fields(item, spec[0], f"{path}[{i}]")
        return out
    if spec is LEAF:
        return out
    if not isinstance(doc, dict):
        return [f"{path} (expected an object)"]
    for key, value in doc.items():
        here = f"{path}.{key}" if path else key
        if key not in spec:
            out.append(here)
        else:
            out += unknown_fields(value, spec[key], here)
    return out


def api_version():
    return "kubeadm.k8s.io/v1beta2" if minor() < 22 else "kubeadm.k8s.io/v1beta4"


# A36 cmd/kubeadm/app/util/config/common.go validateSupportedVersion (1.31+ revision): APIs removed, with the kubeadm
# that last read them, and the deprecated one that is still read with a warning.
OLD_APIS_36 = {"kubeadm.k8s.io/v1alpha1": "v1.11", "kubeadm.k8s.io/v1alpha2": "v1.12",
               "kubeadm.k8s.io/v1alpha3": "v1.14", "kubeadm.k8s.io/v1beta1": "v1.15",
               "kubeadm.k8s.io/v1beta2": "v1.22"}  # fmt: skip
DEPRECATED_APIS_36 = ("kubeadm.k8s.io/v1beta3",)
OLD_APIS_17 = ("kubeadm.k8s.io/v1alpha1", "kubeadm.k8s.io/v1alpha2", "kubeadm.k8s.io/v1alpha3")


def load_config(path, verb):
    """A17 cmd/kubeadm/app/util/config/initconfiguration.go:206-339 and joinconfiguration.go:92-131."""
    text = read(p(path))
    if text is None:
        fail(f"unable to read config from {path!r} [open {path}: no such file or directory]")
    try:
        docs = load_yaml_docs(text)
    except Exception as exc:  # noqa: BLE001 - YAML errors are kubeadm's "invalid configuration"
        fail(f"invalid configuration: {exc}")
    want = api_version()
    known = schema(minor() >= 22)
    found, seen, problems = {}, set(), []
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            fail("invalid configuration: kind and apiVersion is mandatory information that needs to be specified in "
                 "all YAML documents")  # fmt: skip
        kind, version = doc["kind"], doc["apiVersion"]
        if kind in seen:
            fail(f'invalid configuration: kind "{kind}" is specified twice in YAML file')
        seen.add(kind)
        if minor() < 22 and version in OLD_APIS_17:
            fail(f'your configuration file uses an old API spec: "{version}". Please use kubeadm ... instead')
        if minor() >= 22 and version in OLD_APIS_36:
            fail(f"your configuration file uses an old API spec: {json.dumps(version)} (kind: {json.dumps(kind)}). "
                 f"Please use kubeadm {OLD_APIS_36[version]} instead and run 'kubeadm config migrate --old-config "
                 "old.yaml --new-config new.yaml', which will write the new, similar spec using a newer API "
                 "version.")  # fmt: skip
        if kind in known:
            accepted = (want,) if minor() < 22 else (want, *DEPRECATED_APIS_36)
            if version not in accepted:
                problems.append(f"{kind} is {version}; this stand-in takes only {' or '.join(accepted)} (the pinned "
                                "kubeadm's APIs)")  # fmt: skip
                continue
            if version in DEPRECATED_APIS_36:
                print(f"W0000 00:00:00.000000 1 common.go:101] your configuration file uses a deprecated API spec: "
                      f"{json.dumps(version)} (kind: {json.dumps(kind)}). Please use 'kubeadm config migrate "
                      "--old-config old.yaml --new-config new.yaml', which will write the new, similar spec using a "
                      "newer API version.", file=sys.stderr)  # fmt: skip
            bad = unknown_fields(doc, schema_for(version)[kind])
            if bad:
                problems.append(f"{kind} has fields {version} does not have: {', '.join(bad)}")
            found[kind] = doc
        elif (kind, version) in (("KubeletConfiguration", "kubelet.config.k8s.io/v1beta1"),
                                 ("KubeProxyConfiguration", "kubeproxy.config.k8s.io/v1alpha1")):  # fmt: skip
            found[kind] = doc
        elif verb == "init":
            print(f"[config] WARNING: Ignored YAML document with GroupVersionKind {version}, Kind={kind}")
    if problems:
        fail("nodeimage stand-in kubeadm: " + "; ".join(problems) + " (upstream warns and drops unknown fields)")
    if verb == "init" and not {"InitConfiguration", "ClusterConfiguration"} & set(found):
        fail("no InitConfiguration or ClusterConfiguration kind was found in the YAML file")
    if verb == "join" and "JoinConfiguration" not in found:
        fail("no JoinConfiguration found in the supplied config")
    return found


# --- images ---------------------------------------------------------------------------------------------------
# A17 cmd/kubeadm/app/images/images.go, constants.go:264-426. A36 images.go (commit 008b3652) GetControlPlaneImages:
# the control plane, kube-proxy, CoreDNS (under coredns/ in the default repository only: GetDNSImage), pause, etcd;
# the versions from CHANGELOG-1.36.md v1.36.0 (pause 3.10.2 #138199, CoreDNS v1.14.2 #137605, etcd 3.6.8 #137107),
# constants.go at v1.36.4 not being readable here.


def images(cluster, version):
    repo = cluster.get("imageRepository") or ("k8s.gcr.io" if minor() < 22 else "registry.k8s.io")
    tag = vee(version)
    names = [f"{repo}/{c}:{tag}" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")]
    if minor() < 22:
        return names + [f"{repo}/pause:3.1", f"{repo}/etcd:3.4.3-0", f"{repo}/coredns:1.6.5"]
    dns = f"{repo}/coredns" if repo == "registry.k8s.io" else repo
    return names + [f"{dns}/coredns:v1.14.2", f"{repo}/pause:3.10.2", f"{repo}/etcd:3.6.8-0"]


# --- preflight (A17 cmd/kubeadm/app/preflight/checks.go) -------------------------------------------------------


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def _kernel_config():
    """system-validators v1.0.4 kernel_validator.go:179-234: the kernel's config must be readable."""
    release = os.uname().release
    paths = [
        "/proc/config.gz",
        f"/boot/config-{release}",
        f"/usr/src/linux-{release}/.config",
        "/usr/src/linux/.config",
        f"/usr/lib/modules/{release}/config",
        f"/lib/modules/{release}/build/.config",
    ]
    return next((c for c in paths if os.path.exists(p(c))), None), paths


def _mem_mb():
    """Total RAM in MB as syscall.Sysinfo gives it (MemTotal of /proc/meminfo is the same number, in kB)."""
    for line in (read(p("/proc/meminfo"), "") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def preflight(verb, registration, cluster, endpoint, api_port=None):
    errors, warnings = [], []
    ignored = {i.lower() for i in registration.get("ignorePreflightErrors") or []}
    old = minor() < 22

    def error(name, message):
        (warnings if name.lower() in ignored or "all" in ignored else errors).append((name, message))

    if os.geteuid() != 0 and not ROOT:
        fail("[preflight] Some fatal errors occurred:\n\t[ERROR IsPrivilegedUser]: user is not running as root")
    if verb == "init":
        if (os.cpu_count() or 1) < 2:
            error("NumCPU", f"the number of available CPUs {os.cpu_count()} is less than the required 2")
        mem = _mem_mb()
        if not old and mem is not None and mem < 1700:  # A36 checks_linux.go MemCheck, ControlPlaneMem = 1700
            error("Mem", f"the system RAM ({mem} MB) is less than the minimum 1700 MB")
        ports = [int(api_port or 6443), 10259, 10257, 2379, 2380]
        for manifest in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
            path = f"/etc/kubernetes/manifests/{manifest}.yaml"
            if os.path.exists(p(path)):
                error("FileAvailable-" + path.replace("/", "-"), f"{path} already exists")
        if os.path.isdir(p("/var/lib/etcd")) and os.listdir(p("/var/lib/etcd")):
            error("DirAvailable--var-lib-etcd", "/var/lib/etcd is not empty")
    else:
        ports = []
        for path in ("/etc/kubernetes/kubelet.conf", "/etc/kubernetes/bootstrap-kubelet.conf",
                     "/etc/kubernetes/pki/ca.crt"):  # fmt: skip
            if os.path.exists(p(path)):
                error("FileAvailable-" + path.replace("/", "-"), f"{path} already exists")
    for port in [*ports, 10250]:
        if not _port_free(port):
            error(f"Port-{port}", f"Port {port} is in use")
    # addCommonChecks for a CRI socket (A17 checks.go:994-1037: crictl; A36: kubeadm talks to the CRI itself,
    # cmd/kubeadm/app/util/runtime, so crictl is no longer needed)
    crictl = which("crictl")
    if old and not crictl:
        error("FileExisting-crictl", "crictl not found in system path")
    if old and crictl:
        proc = _crictl(crictl, endpoint, "info")
        if proc.returncode != 0:
            error("CRI", f"container runtime is not running: output: {proc.stdout.strip()}, error: exit status "
                         f"{proc.returncode}")  # fmt: skip
    if not old:
        why = "no runtime status"
        try:
            ok = bool(cri_request(endpoint, "INFO", timeout=10).get("status"))
        except (OSError, ValueError) as exc:
            ok, why = False, str(exc)
        if not ok:
            error("CRI", f"could not connect to the container runtime {endpoint}: {why}")
    sysctls = ["/proc/sys/net/ipv4/ip_forward"]
    if old:
        sysctls.insert(0, "/proc/sys/net/bridge/bridge-nf-call-iptables")
    for path in sysctls:
        content = read(p(path))
        name = "FileContent-" + path.replace("/", "-")
        if content is None:
            error(name, f"{path} does not exist")
        elif not content.startswith("1"):
            error(name, f"{path} contents are not set to 1")
    swaps = (read(p("/proc/swaps"), "") or "").strip().splitlines()
    if len(swaps) > 1:
        if old:
            error("Swap", "running with swap on is not supported. Please disable swap")
        else:
            warnings.append(("Swap", "swap is supported for cgroup v2 only. ..."))
    mandatory = ("ip", "iptables", "mount", "nsenter") if old else ("mount", "losetup", "cp")
    optional = ("ebtables", "ethtool", "socat", "tc", "touch") if old else ()
    for exe in mandatory:
        if not which(exe):
            error(f"FileExisting-{exe}", f"{exe} not found in system path")
    for exe in optional:
        if not which(exe):
            warnings.append((f"FileExisting-{exe}", f"{exe} not found in system path"))
    found, paths = _kernel_config()
    if found is None:
        error("SystemVerification", f"failed to parse kernel config: no config path in {paths} is available")
    cgroups = {}
    for line in (read(p("/proc/cgroups"), "") or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 4:
            cgroups[fields[0]] = fields[3] != "0"
    required = ("cpu", "cpuacct", "cpuset", "devices", "freezer", "memory") if old else ()
    missing = [c for c in required if not cgroups.get(c)]
    if missing:
        error("SystemVerification", f"missing cgroups: {' '.join(missing)}")
    controllers = read(p("/sys/fs/cgroup/cgroup.controllers"))
    if not old and controllers is None:
        # kubernetes/system-validators@v1.12.1 validators/cgroup_validator_linux.go:119-134: on a v1 host, an error
        # when the kubelet is 1.35 or newer (isCgroupsV1DisabledInKubelet, :255-269)
        error("SystemVerification", "cgroups v1 support is deprecated and will be removed in a future release. Please "
              "migrate to cgroups v2. To explicitly enable cgroups v1 support for kubelet v1.35 or newer, you must "
              "set the kubelet configuration option 'FailCgroupV1' to 'false'. You must also explicitly skip this "
              "validation. For more information, see https://git.k8s.io/enhancements/keps/sig-node/"
              "5573-remove-cgroup-v1")  # fmt: skip
    elif not old:
        # system-validators@v1.12.1 cgroup_validator_linux.go:199-216 and types_unix.go CgroupsV2: devices counts as
        # present (eBPF), freezer when cgroup.freeze can be made (assumed here: the stand-in cannot make cgroups)
        have = {"devices", "freezer", *controllers.split()}
        missing = [c for c in ("cpu", "cpuset", "devices", "freezer", "memory", "pids") if c not in have]
        if missing:
            error("SystemVerification", f"missing required cgroups: {' '.join(missing)}")
    kubelet = which("kubelet")
    if kubelet is None:
        error("KubeletVersion", "couldn't get kubelet version: cannot execute 'kubelet --version'")
    else:
        out = subprocess.run([kubelet, "--version"], capture_output=True, text=True).stdout
        m = re.match(r"^\s*Kubernetes v((0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-0-9a-zA-Z_.+]*)?)\s*$", out)
        if not m:
            error("KubeletVersion", f"couldn't get kubelet version: Unable to parse output from Kubelet: {out!r}")
        elif int(m.group(3)) > minor() or int(m.group(3)) < minor() - (1 if old else 3):
            error(
                "KubeletVersion", f"kubelet {m.group(0).strip()} is not a supported version skew for kubeadm {VERSION}"
            )
    if not ROOT and systemctl("is-enabled", "--quiet", "kubelet") != 0:  # A17 checks.go:123-151: a warning only
        warnings.append(("Service-Kubelet", "kubelet service is not enabled, please run 'systemctl enable "
                                            "kubelet.service'"))  # fmt: skip
    for name, message in warnings:
        print(f"\t[WARNING {name}]: {message}", file=sys.stderr)
    if errors:
        text = "".join(f"\t[ERROR {n}]: {m}\n" for n, m in errors)
        fail("error execution phase preflight: [preflight] Some fatal errors occurred:\n" + text + "[preflight] If you "
             "know what you are doing, you can make a check non-fatal with `--ignore-preflight-errors=...`\nTo see the "
             "stack trace of this error execute with --v=5 or higher")  # fmt: skip


def _crictl(crictl, endpoint, *args):
    socket_path = endpoint if endpoint.startswith("unix://") else "unix://" + endpoint  # A17 runtime.go:57-65
    if crictl is None:
        return subprocess.CompletedProcess(args, 1, "crictl not found", "")
    return subprocess.run([crictl, "-r", socket_path, *args], capture_output=True, text=True)


def _image_present(crictl, endpoint, image):
    if minor() < 22:
        return _crictl(crictl, endpoint, "inspecti", image).returncode == 0
    try:  # A36: ImageExists through the CRI ImageService
        return "image" in cri_request(endpoint, "IMAGE " + image, timeout=10)
    except (OSError, ValueError):
        return False


def _pull(crictl, endpoint, image):
    if minor() < 22:
        return _crictl(crictl, endpoint, "pull", image)
    try:
        answer = cri_request(endpoint, "PULL " + image, timeout=60)
    except (OSError, ValueError) as exc:
        answer = {"error": str(exc)}
    return subprocess.CompletedProcess([], 1 if "error" in answer else 0, "", answer.get("error", ""))


def pull_images(image_list, endpoint):
    """A17 checks.go:830-850 ImagePull: `crictl inspecti` each image, `crictl pull` the missing ones; A36 (checks.go
    @00b6a4c, serial pulls with the default policy IfNotPresent): the same through the CRI."""
    crictl = which("crictl")
    print("[preflight] Pulling images required for setting up a Kubernetes cluster")
    errors = []
    for image in image_list:
        if _image_present(crictl, endpoint, image):
            note("kubeadm-images.log", f"present {image}")
            continue
        proc = _pull(crictl, endpoint, image)
        if proc.returncode != 0:
            note("kubeadm-images.log", f"pull-failed {image}")
            errors.append(f"\t[ERROR ImagePull]: failed to pull image {image}: output: {proc.stderr.strip()}, error: "
                          f"exit status {proc.returncode}\n")  # fmt: skip
        else:
            note("kubeadm-images.log", f"pulled {image}")
    if errors:
        fail("error execution phase preflight: [preflight] Some fatal errors occurred:\n" + "".join(errors))


# --- what init/join leave on the node ---------------------------------------------------------------------------


KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: bm9kZWltYWdlIHN0YW5kLWluCg==
    server: https://{endpoint}
  name: {cluster}
contexts:
- context: {{cluster: {cluster}, user: {user}}}
  name: {user}@{cluster}
current-context: {user}@{cluster}
users:
- name: {user}
  user: {{token: nodeimage-standin-not-a-credential}}
"""


def kubelet_start(registration, docs, endpoint):
    """A17 cmd/kubeadm/app/phases/kubelet/flags.go: kubeadm-flags.env for a CRI socket, then config.yaml, then
    `systemctl restart kubelet`; the kubelet must come up (else kubeadm's wait fails: [kubelet-check])."""
    flags = []
    if minor() < 22:
        flags += ["--container-runtime=remote", f"--container-runtime-endpoint={registration.get('criSocket')}"]
    extra = registration.get("kubeletExtraArgs") or {}
    pairs = extra.items() if isinstance(extra, dict) else [(a["name"], a["value"]) for a in extra]
    flags += [f"--{k}={v}" for k, v in pairs]
    write(p("/var/lib/kubelet/kubeadm-flags.env"), f'KUBELET_KUBEADM_ARGS="{" ".join(flags)}"\n')
    kubelet_conf = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                    "staticPodPath": "/etc/kubernetes/manifests"}  # fmt: skip
    kubelet_conf.update({k: v for k, v in docs.get("KubeletConfiguration", {}).items() if k not in kubelet_conf})
    if minor() >= 22:
        # A36: kubeadm defaults cgroupDriver to systemd (componentconfigs/kubelet.go) and, with NodeLocalCRISocket
        # (GA in 1.36, #135742), writes the node's CRI endpoint to /var/lib/kubelet/instance-config.yaml, merged over
        # config.yaml, instead of a --container-runtime-endpoint flag
        kubelet_conf.setdefault("cgroupDriver", "systemd")
        instance = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                    "containerRuntimeEndpoint": endpoint}  # fmt: skip
        write(p("/var/lib/kubelet/instance-config.yaml"), json.dumps(instance, indent=2) + "\n")
        kubelet_conf["containerRuntimeEndpoint"] = endpoint
    write(p("/var/lib/kubelet/config.yaml"), json.dumps(kubelet_conf, indent=2) + "\n")
    print('[kubelet-start] Writing kubelet environment file with flags to file "/var/lib/kubelet/kubeadm-flags.env"')
    if ROOT:
        return
    systemctl("restart", "kubelet")
    time.sleep(8)
    if systemctl("is-active", "--quiet", "kubelet") != 0:
        fail(
            "[kubelet-check] The kubelet is not running: it exited soon after it was started (see `journalctl -u "
            "kubelet`)\nerror execution phase wait-control-plane: couldn't initialize a Kubernetes cluster"
        )


def init(docs, endpoint):
    init_doc = docs.get("InitConfiguration", {})
    cluster = docs.get("ClusterConfiguration", {})
    registration = init_doc.get("nodeRegistration", {})
    preflight("init", registration, cluster, endpoint, init_doc.get("localAPIEndpoint", {}).get("bindPort"))
    pull_images(images(cluster, cluster.get("kubernetesVersion", VERSION)), endpoint)
    ca = [os.path.exists(p(f"/etc/kubernetes/pki/ca.{x}")) for x in ("crt", "key")]
    print("[certs] Using existing ca certificate authority" if all(ca) else '[certs] Generating "ca" certificate')
    note("kubeadm-certs.log", "existing-ca" if all(ca) else "generated-ca")
    api = init_doc.get("localAPIEndpoint", {})
    server = cluster.get("controlPlaneEndpoint") or "{}:{}".format(
        api.get("advertiseAddress", "127.0.0.1"), api.get("bindPort", 6443)
    )
    for name, user in (("admin", "kubernetes-admin"), ("kubelet", "system:node"), ("controller-manager", "cm"),
                       ("scheduler", "scheduler")):  # fmt: skip
        write(p(f"/etc/kubernetes/{name}.conf"), KUBECONFIG.format(endpoint=server, cluster=cluster.get(
            "clusterName", "kubernetes"), user=user), 0o600)  # fmt: skip
    port = api.get("bindPort", 6443)
    for manifest in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        # not a pod: the stand-in kubelet only reads the API server's port from it (and serves it)
        flags = f"    - --secure-port={port}\n" if manifest == "kube-apiserver" else ""
        text = f"# nodeimage stand-in: not a static pod\n{flags}"
        write(p(f"/etc/kubernetes/manifests/{manifest}.yaml"), text, 0o600)
    kubelet_start(registration, docs, endpoint)
    token = (init_doc.get("bootstrapTokens") or [{}])[0].get("token", "abcdef.0123456789abcdef")
    print("Your Kubernetes control-plane has initialized successfully!")
    print(f"kubeadm join {server} --token {token} --discovery-token-ca-cert-hash sha256:<hash>")


def join(docs, endpoint):
    join_doc = docs["JoinConfiguration"]
    registration = join_doc.get("nodeRegistration", {})
    preflight("join", registration, {}, endpoint)
    token = join_doc.get("discovery", {}).get("bootstrapToken", {})
    if not re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", token.get("token", "")):
        fail("discovery.bootstrapToken.token: Invalid value: the bootstrap token is invalid")
    hashes = token.get("caCertHashes") or []
    if not hashes and not token.get("unsafeSkipCAVerification"):
        fail("discovery.bootstrapToken: Invalid value: using token-based discovery without caCertHashes can be unsafe")
    if any(not re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes):
        fail(f'invalid public key hash, expected "format:value": {hashes}')
    host, _, port = token.get("apiServerEndpoint", "").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        fail(f"[discovery] Failed to request cluster-info, will try again: Get https://{host}:{port}/...: {exc}")
    write(p("/etc/kubernetes/pki/ca.crt"), "# nodeimage stand-in: the cluster CA would be here\n")
    kubeconfig = KUBECONFIG.format(endpoint=token["apiServerEndpoint"], cluster="kubernetes", user="system:node")
    write(p("/etc/kubernetes/kubelet.conf"), kubeconfig, 0o600)
    kubelet_start(registration, docs, endpoint)
    print("This node has joined the cluster")


def reset():
    """A17 cmd/kubeadm/app/cmd/phases/reset/cleanupnode.go: stop the kubelet, remove what init/join wrote."""
    systemctl("stop", "kubelet")
    for d in ("/etc/kubernetes/manifests", "/etc/kubernetes/pki", "/var/lib/kubelet", "/var/lib/etcd"):
        if os.path.isdir(p(d)):
            for name in os.listdir(p(d)):
                path = os.path.join(p(d), name)
                shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    for name in ("admin.conf", "kubelet.conf", "bootstrap-kubelet.conf", "controller-manager.conf", "scheduler.conf"):
        if os.path.exists(p(f"/etc/kubernetes/{name}")):
            os.unlink(p(f"/etc/kubernetes/{name}"))
    print("[reset] Deleted contents of the etcd data directory: /var/lib/etcd")


def main(args):
    flags, positionals, _ = parse_flags(
        args, {"config", "output", "cri-socket", "kubernetes-version", "image-repository", "v"},
        booleans={"force", "help"}, aliases={"o": "output", "f": "force"},
    )  # fmt: skip
    sub = positionals[0] if positionals else None
    if sub == "version":
        short = last(flags, "output") == "short"
        print(vee(VERSION) if short else f'kubeadm version: &version.Info{{Major:"1", Minor:"{minor()}", '
                                         f'GitVersion:"{vee(VERSION)}", GitCommit:"nodeimage-standin"}}')  # fmt: skip
        return 0
    if sub == "reset":
        reset()
        return 0
    if sub == "config" and positionals[1:3] == ["images", "list"]:
        cluster = {}
        if "config" in flags:
            cluster = load_config(last(flags, "config"), "init").get("ClusterConfiguration", {})
        if last(flags, "image-repository"):
            cluster["imageRepository"] = last(flags, "image-repository")
        print("\n".join(images(cluster, last(flags, "kubernetes-version", cluster.get("kubernetesVersion", VERSION)))))
        return 0
    if sub in ("init", "join"):
        config = last(flags, "config")
        if not config:
            fail(f"nodeimage stand-in kubeadm {sub}: only --config is supported (first boot passes a file)")
        if os.path.isfile(p(config)):
            write(os.path.join(LOG_DIR, f"kubeadm-{sub}-config.yaml"), read(p(config)), 0o600)
        docs = load_config(config, sub)
        kind = "InitConfiguration" if sub == "init" else "JoinConfiguration"
        registration = docs.get(kind, {}).get("nodeRegistration", {})
        endpoint = registration.get("criSocket") or CRIO_SOCKET
        if minor() >= 22 and not endpoint.startswith("unix://"):
            # A36 cmd/kubeadm/app/util/config/initconfiguration.go (and joinconfiguration.go): a warning, and the
            # scheme is prepended
            print(f"W0000 00:00:00.000000 1 initconfiguration.go:120] Usage of CRI endpoints without URL scheme is "
                  f'deprecated and can cause kubelet errors in the future. Automatically prepending scheme "unix" to '
                  f'the "criSocket" with value {json.dumps(endpoint)}. Please update your configuration!',
                  file=sys.stderr)  # fmt: skip
            endpoint = "unix://" + endpoint
        (init if sub == "init" else join)(docs, endpoint)
        return 0
    return 0
