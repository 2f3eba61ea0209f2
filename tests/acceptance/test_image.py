"""Acceptance tests for a nodeimage node image, un-booted (chroot) or booted (ssh).

Each check reads the image through testinfra's ``host``; expectations come from
this checkout (see conftest.py). Checks that need a running image are marked
``booted_only``; checks of what a first boot regenerates are ``unbooted_only``;
checks of real upstream behaviour are ``needs_upstream``.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
import yaml

Expected = Any  # conftest.Expected: the profile's versions, from this checkout


CRIO_CONF = "/etc/crio/crio.conf"
KUBELET_UNIT = "/etc/systemd/system/kubelet.service"
KUBELET_DROPINS = "/etc/systemd/system/kubelet.service.d"
SHARE = "/usr/local/share/nodeimage"
CNI_MANIFEST = f"{SHARE}/cni-manifest.json"
STACK_JSON = f"{SHARE}/stack.json"
# CRI-O 1.17.2 exits at start when a hooks directory is missing (pkg/config/config.go, RuntimeConfig.Validate,
# "invalid hooks_dir"; cri-o issue 3179); the default list names the first, nodeimage's crio.conf both.
HOOKS_DIRS = ["/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"]
KATA_HANDLER = "kata-runtime"
BUILD_USER = "nodeimage-build"
# fmt: off
CNI_PLUGINS = [
    "bandwidth", "bridge", "dhcp", "firewall", "flannel", "host-device", "host-local", "ipvlan",
    "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tuning", "vlan",
]
# fmt: on


def parse_key_values(text: str) -> dict[str, str]:
    """KEY=value lines (os-release style, optional quotes) into a dict."""
    pairs = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\s*([A-Z0-9_]+)=(.*)", line)
        if m:
            pairs[m.group(1)] = m.group(2).strip().strip("'\"")
    return pairs


def _read(host: Any, path: str) -> str:
    f = host.file(path)
    assert f.exists, f"{path} is missing"
    return f.content_string


# --- binaries at the pinned versions -------------------------------------------------------------

# tool, version command, component, expected output line (format of the real tool)
VERSIONS = [
    ("kubelet", "kubelet --version", "kubernetes-node", "Kubernetes {v}"),
    ("kubeadm", "kubeadm version -o short", "kubernetes-node", "{v}"),
    ("kubectl", "kubectl version --client --short", "kubernetes-node", "Client Version: {v}"),
    ("crictl", "crictl --version", "crictl", "crictl version {v}"),
    ("crio", "crio --version", "cri-o", "crio version {bare}"),
    ("kata-runtime", "kata-runtime --version", "kata-static", "kata-runtime  : {bare}"),
    ("conmon", "conmon --version", "conmon", "conmon version {bare}"),
]


@pytest.mark.parametrize(("tool", "command", "component", "line"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_binary_at_pinned_version(host: Any, expected: Expected, tool: str, command: str, component: str, line: str):
    assert host.exists(tool), f"{tool} is not on PATH"
    out = host.run(command)
    assert out.rc == 0, f"{command} failed ({out.rc}): {out.stderr}"
    want = line.format(v=expected.version(component), bare=expected.bare(component))
    assert want in out.stdout.splitlines(), f"{command} printed {out.stdout!r}, expected a line {want!r}"


@pytest.mark.parametrize(
    ("path", "mode"),
    [
        ("/usr/local/bin/kubelet", 0o755),
        ("/usr/local/bin/kubeadm", 0o755),
        ("/usr/local/bin/kubectl", 0o755),
        ("/usr/local/bin/crictl", 0o755),
        ("/usr/local/bin/conmon", 0o755),
        ("/usr/local/bin/pinns", 0o755),
    ],
)
def test_binary_installed_root_owned(host: Any, path: str, mode: int):
    f = host.file(path)
    assert f.is_file and f.user == "root" and f.mode == mode, f"{path}: {f.user} {oct(f.mode)}"


def test_kata_runtime_linked_into_path(host: Any):
    link = host.file("/usr/local/bin/kata-runtime")
    assert link.is_symlink and link.linked_to == "/opt/kata/bin/kata-runtime"
    assert host.file("/opt/kata/share/defaults/kata-containers/configuration.toml").exists


# --- CRI-O configuration -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crio_conf(host: Any) -> dict[str, Any]:
    return tomllib.loads(_read(host, CRIO_CONF))


def _dig(conf: dict[str, Any], dotted: str) -> Any:
    value: Any = conf
    for key in dotted.split("|"):
        assert key in value, f"{CRIO_CONF} has no {dotted.replace('|', '.')}"
        value = value[key]
    return value


CRIO_SETTINGS = [
    ("crio|runtime|cgroup_manager", "systemd"),
    # persistent: crio-wipe removes the images of CRI-O's containers when the version file is gone (a reboot
    # with it on /run), which an air-gapped node cannot pull again
    ("crio|version_file", "/var/lib/crio/version"),
    ("crio|runtime|conmon", "/usr/local/bin/conmon"),
    ("crio|runtime|conmon_cgroup", "pod"),
    ("crio|runtime|default_runtime", "runc"),
    ("crio|runtime|manage_ns_lifecycle", True),
    ("crio|runtime|runtimes|runc|runtime_type", "oci"),
    ("crio|runtime|runtimes|kata-runtime|runtime_type", "oci"),
    ("crio|network|network_dir", "/etc/cni/net.d/"),
    ("crio|api|listen", "/var/run/crio/crio.sock"),
]


@pytest.mark.parametrize(("key", "value"), CRIO_SETTINGS, ids=[k.replace("|", ".") for k, _ in CRIO_SETTINGS])
def test_crio_conf_setting(crio_conf: dict[str, Any], key: str, value: Any):
    assert _dig(crio_conf, key) == value


@pytest.mark.parametrize("path", HOOKS_DIRS)
def test_crio_hooks_dir_exists(host: Any, crio_conf: dict[str, Any], path: str):
    assert path in _dig(crio_conf, "crio|runtime|hooks_dir")
    assert host.file(path).is_directory, f"{path} is missing: CRI-O 1.17.2 would exit at start (invalid hooks_dir)"


def test_kata_handler_does_not_pass_host_devices(crio_conf: dict[str, Any]):
    """As kata-deploy writes it: without it a privileged Kata pod gets every device of the host
    (cri-o v1.17.2 pkg/config/config.go RuntimeHandler; kata-containers/packaging 1.12.1 kata-deploy.sh)."""
    assert _dig(crio_conf, f"crio|runtime|runtimes|{KATA_HANDLER}|privileged_without_host_devices") is True


def test_pause_image_from_the_profile_registry(crio_conf: dict[str, Any], expected: Expected):
    """k8s.gcr.io (CRI-O 1.17's and kubeadm 1.17's default) is frozen: the pause image comes from the profile's."""
    pause = _dig(crio_conf, "crio|image|pause_image")
    assert pause == f"{expected.image_repository}/pause:3.1", pause


def test_crio_cni_plugin_dirs_include_opt_cni_bin(crio_conf: dict[str, Any]):
    dirs = [d.rstrip("/") for d in _dig(crio_conf, "crio|network|plugin_dirs")]
    assert "/opt/cni/bin" in dirs


@pytest.mark.parametrize("runtime", ["runc", "kata-runtime"])
def test_crio_runtime_path_is_executable(host: Any, crio_conf: dict[str, Any], runtime: str):
    path = _dig(crio_conf, f"crio|runtime|runtimes|{runtime}|runtime_path")
    assert path, f"runtime {runtime} has no runtime_path"
    assert host.run("test -x %s", path).rc == 0, f"{runtime} runtime_path {path} is not executable"


def test_crio_pinns_path_is_executable(host: Any, crio_conf: dict[str, Any]):
    """manage_ns_lifecycle needs pinns; a wrong path fails every pod sandbox."""
    path = _dig(crio_conf, "crio|runtime|pinns_path")
    assert host.run("test -x %s", path).rc == 0, f"pinns_path {path} is not executable"


def test_short_image_names_resolve_on_docker_hub(host: Any, crio_conf: dict[str, Any]):
    """The Weave manifest names weaveworks/weave-kube:<v> without a registry."""
    registries = crio_conf.get("crio", {}).get("image", {}).get("registries", [])
    conf = host.file("/etc/containers/registries.conf")
    unqualified = []
    if conf.exists:
        unqualified = tomllib.loads(conf.content_string).get("unqualified-search-registries", [])
    assert "docker.io" in registries or "docker.io" in unqualified


@pytest.mark.parametrize("name", ["100-crio-bridge.conf", "200-loopback.conf", "10-crio-bridge.conf"])
def test_no_crio_default_cni_config(host: Any, name: str):
    assert not host.file(f"/etc/cni/net.d/{name}").exists, "CRI-O's default CNI config would preempt Weave"


def test_crictl_points_at_crio(host: Any):
    conf = yaml.safe_load(_read(host, "/etc/crictl.yaml"))
    assert conf["runtime-endpoint"] == "unix:///var/run/crio/crio.sock"


@pytest.mark.parametrize("plugin", CNI_PLUGINS)
def test_cni_plugin_installed(host: Any, plugin: str):
    f = host.file(f"/opt/cni/bin/{plugin}")
    assert f.is_file and f.mode & 0o111, f"/opt/cni/bin/{plugin} missing or not executable"


# --- kubelet unit ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubelet_units(host: Any) -> str:
    """The unit, its drop-ins and /etc/default/kubelet: everything that shapes kubelet's command line."""
    texts = [_read(host, KUBELET_UNIT)]
    dropins = host.file(KUBELET_DROPINS)
    if dropins.is_directory:
        texts += [_read(host, f"{KUBELET_DROPINS}/{n}") for n in sorted(dropins.listdir()) if n.endswith(".conf")]
    if host.file("/etc/default/kubelet").exists:
        texts.append(_read(host, "/etc/default/kubelet"))
    return "\n".join(texts)


def test_kubelet_unit_waits_for_kubeadm(host: Any):
    unit = _read(host, KUBELET_UNIT)
    assert "ConditionPathExists=/var/lib/kubelet/config.yaml" in unit
    assert re.search(r"^ExecStart=/usr/local/bin/kubelet", unit, re.M)


def test_kubeadm_dropin(host: Any):
    dropin = _read(host, f"{KUBELET_DROPINS}/10-kubeadm.conf")
    assert re.search(r"^ExecStart=/usr/local/bin/kubelet .*\$KUBELET_KUBEADM_ARGS", dropin, re.M)
    assert "--config=/var/lib/kubelet/config.yaml" in dropin
    assert "EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env" in dropin


@pytest.mark.parametrize(
    "flag",
    [
        "--container-runtime=remote",
        "--container-runtime-endpoint=unix:///var/run/crio/crio.sock",
        "--cgroup-driver=systemd",
        "--runtime-request-timeout=10m",
    ],
)
def test_kubelet_crio_flag(kubelet_units: str, flag: str):
    assert flag in kubelet_units.split() or re.search(re.escape(flag) + r'(\s|"|$)', kubelet_units)


@pytest.mark.parametrize("unit", ["crio.service", "kubelet.service"])
def test_service_enabled(host: Any, unit: str):
    out = host.run("systemctl is-enabled %s", unit)
    assert out.stdout.strip() == "enabled", f"{unit}: {out.stdout.strip()} {out.stderr.strip()}"


# --- kernel prerequisites -------------------------------------------------------------------------


def _conf_dir_text(host: Any, directory: str) -> str:
    d = host.file(directory)
    assert d.is_directory, f"{directory} is missing"
    return "\n".join(_read(host, f"{directory}/{n}") for n in sorted(d.listdir()) if n.endswith(".conf"))


@pytest.mark.parametrize("module", ["overlay", "br_netfilter"])
def test_module_loaded_at_boot(host: Any, module: str):
    lines = [ln.split("#")[0].strip() for ln in _conf_dir_text(host, "/etc/modules-load.d").splitlines()]
    assert module in lines


SYSCTLS = ["net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.ip_forward"]


@pytest.mark.parametrize("key", SYSCTLS)
def test_sysctl_persisted(host: Any, key: str):
    settings = dict(
        (k.strip(), v.strip())
        for k, _, v in (ln.partition("=") for ln in _conf_dir_text(host, "/etc/sysctl.d").splitlines())
        if not k.strip().startswith(("#", ";")) and v
    )
    assert settings.get(key) == "1"


def test_kata_modules_loaded_at_boot(host: Any):
    """What `kata-runtime kata-check` needs (kata-containers/runtime 1.12.1 cli/kata-check_amd64.go): kvm,
    vhost, vhost_net (vhost_vsock optional); kvm_intel/kvm_amd load by CPU modalias where the CPU has them."""
    lines = [ln.split("#")[0].strip() for ln in _conf_dir_text(host, "/etc/modules-load.d").splitlines()]
    assert {"kvm", "vhost", "vhost_net", "vhost_vsock"} <= set(lines)


@pytest.mark.booted_only
def test_cgroup_layout_is_what_the_kubelet_needs(host: Any, expected: Expected):
    """kubelet before 1.19 does not start on a unified (v2) host; Debian 12 boots v2 unless told otherwise."""
    unified = host.file("/sys/fs/cgroup/cgroup.controllers").exists
    if expected.needs_cgroup_v1:
        assert not unified, "cgroup v2 (unified) is mounted at /sys/fs/cgroup: kubelet 1.17 refuses to start"
        assert host.file("/sys/fs/cgroup/memory").is_directory
        assert "systemd.unified_cgroup_hierarchy=0" in _read(host, "/proc/cmdline").split()
    else:
        assert unified, "cgroup v1 is mounted: this kubelet needs the unified hierarchy"


@pytest.mark.parametrize("unit", ["nodeimage-bootstrap.service"])
def test_first_boot_unit_enabled(host: Any, unit: str):
    assert host.run("systemctl is-enabled %s", unit).stdout.strip() == "enabled"


@pytest.mark.unbooted_only
def test_build_vm_name_and_addresses_gone(host: Any):
    """image-builder's sysprep does the same: no hostname, standard /etc/hosts, no netplan of the build NIC."""
    hostname = host.file("/etc/hostname")
    assert not hostname.exists or hostname.content_string.strip() == "", hostname.content_string
    hosts = _read(host, "/etc/hosts")
    assert BUILD_USER not in hosts and "127.0.0.1\tlocalhost" in hosts
    netplan = host.file("/etc/netplan")
    assert not netplan.exists or [n for n in netplan.listdir() if n.endswith(".yaml")] == []


def test_iptables_uses_legacy_backend(host: Any, expected: Expected):
    """kube-proxy 1.17 writes legacy iptables rules; mixing backends breaks Service routing."""
    if expected.kubernetes_minor >= 20:
        pytest.skip("kube-proxy of this version detects the backend itself")
    out = host.run("iptables --version")
    assert out.rc == 0 and "(legacy)" in out.stdout, out.stdout + out.stderr


def test_no_swap_in_fstab(host: Any):
    fstab = host.file("/etc/fstab").content_string if host.file("/etc/fstab").exists else ""
    active = [ln for ln in fstab.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not [ln for ln in active if len(ln.split()) > 2 and ln.split()[2] == "swap"]


@pytest.mark.booted_only
@pytest.mark.parametrize("module", ["overlay", "br_netfilter"])
def test_module_loaded(host: Any, module: str):
    assert host.file(f"/sys/module/{module}").is_directory


@pytest.mark.booted_only
@pytest.mark.parametrize("key", SYSCTLS)
def test_sysctl_in_effect(host: Any, key: str):
    assert host.run("sysctl -n %s", key).stdout.strip() == "1"


@pytest.mark.booted_only
def test_swap_off(host: Any):
    assert _read(host, "/proc/swaps").strip().splitlines()[1:] == []


@pytest.mark.booted_only
def test_crio_running(host: Any):
    assert host.run("systemctl is-active crio.service").stdout.strip() == "active"
    assert host.file("/var/run/crio/crio.sock").is_socket


@pytest.mark.booted_only
def test_kubelet_not_failed(host: Any):
    assert host.run("systemctl is-failed kubelet.service").stdout.strip() != "failed"


# --- what first boot needs ------------------------------------------------------------------------


def test_cni_manifest_baked(host: Any, expected: Expected):
    """The CNI's release manifest, baked for first boot without the internet, with its images where the
    profile says they come from (Weave 2.8.1: a kind List with DaemonSet weave-net; weaveworks/weave v2.8.1,
    prog/weave-kube/weave-daemonset-k8s-1.11.yaml)."""
    manifest = json.loads(_read(host, CNI_MANIFEST))
    items = manifest["items"] if manifest.get("kind") == "List" else [manifest]
    pods = [i["spec"]["template"]["spec"] for i in items if i["kind"] == "DaemonSet"]
    assert pods, f"no DaemonSet in {CNI_MANIFEST}"
    images = [c["image"] for p in pods for c in [*p.get("initContainers", []), *p["containers"]]]
    if expected.cni_image_repository:
        assert all(i.startswith(expected.cni_image_repository + "/") for i in images), images
    if expected.cni == "weave":
        ds = next(i for i in items if i["kind"] == "DaemonSet" and i["metadata"]["name"] == "weave-net")
        pod = ds["spec"]["template"]["spec"]
        assert {c["name"] for c in pod["containers"]} == {"weave", "weave-npc"}
        assert [c["name"] for c in pod.get("initContainers", [])] == ["weave-init"]
        version = expected.bare("weave-manifest")
        assert {i.rsplit("/", 1)[-1] for i in images} == {f"weave-kube:{version}", f"weave-npc:{version}"}


STORE_IMAGES = "/var/lib/containers/storage/overlay-images/images.json"


def test_container_images_baked(host: Any, expected: Expected, booted: bool):
    """Every image the node runs at first boot is in CRI-O's containers-storage at the digest the lock pins
    (read from the store's own record, as CRI-O and skopeo read it); an un-booted image has exactly those."""
    store = host.file(STORE_IMAGES)
    assert store.exists, f"{STORE_IMAGES} is missing: no container image is baked"
    baked = {(n, i.get("digest")) for i in json.loads(store.content_string) for n in i.get("names", [])}
    names = {n for n, _ in baked}
    for ref, digest in expected.images:
        assert ref in names, f"{ref} is not baked"
        if digest:
            assert (ref, digest) in baked, f"{ref} is baked at another digest than the lock's {digest}"
    if not booted:
        assert names == {ref for ref, _ in expected.images}, names ^ {ref for ref, _ in expected.images}


def test_stack_description_baked(host: Any, expected: Expected):
    """What first boot applies besides the CNI: the RuntimeClass, in an API the cluster's version serves
    (node.k8s.io/v1 arrived in Kubernetes 1.20; 1.17 serves v1beta1)."""
    data = json.loads(_read(host, STACK_JSON))
    rc = data["runtime_class"]
    assert rc["apiVersion"] == ("node.k8s.io/v1beta1" if expected.kubernetes_minor < 20 else "node.k8s.io/v1")
    assert rc["kind"] == "RuntimeClass"
    assert rc["scheduling"]["nodeSelector"] == {"katacontainers.io/kata-runtime": "true"}
    assert data["cni"]["manifest"] == CNI_MANIFEST
    assert data["kubernetes_version"] == expected.kubernetes


def test_release_file_matches_profile(host: Any, expected: Expected):
    release = parse_key_values(_read(host, "/etc/nodeimage-release"))
    assert release.get("PROFILE") == expected.profile
    assert release.get("BASE_DISTRO") == expected.distro
    assert release.get("BASE_RELEASE") == expected.release
    assert release.get("KUBERNETES_VERSION") == expected.kubernetes
    for component, version in expected.components.items():
        key = re.sub(r"[^A-Z0-9]", "_", component.upper()) + "_VERSION"
        assert release.get(key) == version, f"{key}={release.get(key)}, profile pins {version}"
    assert re.fullmatch(r"[0-9a-f]{64}", release.get("LOCK_SHA256", "")), "LOCK_SHA256 missing or malformed"
    assert release.get("NODEIMAGE_VERSION")


def test_release_file_has_image_builders_fields(host: Any, expected: Expected):
    """What tools that read image-builder's /etc/image-builder-release look for (kubernetes-sigs/image-builder
    images/capi/ansible/roles/node/tasks/main.yml): the builder's version, its commit, the Kubernetes version,
    the build date."""
    release = parse_key_values(_read(host, "/etc/nodeimage-release"))
    assert {"IMAGE_BUILDER_VERSION", "IMAGE_BUILDER_COMMIT", "KUBERNETES_VERSION", "BUILD_DATE"} <= set(release)
    assert release["IMAGE_BUILDER_VERSION"].startswith("nodeimage-")
    assert release["KUBERNETES_VERSION"] == expected.kubernetes
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", release["BUILD_DATE"]), release["BUILD_DATE"]


@pytest.mark.parametrize("unit", ["apt-daily.timer", "apt-daily-upgrade.timer"])
def test_apt_timer_off(host: Any, unit: str):
    state = host.run("systemctl is-enabled %s", unit).stdout.strip()
    assert state in ("masked", "disabled", ""), f"{unit} is {state}"


def test_no_unattended_upgrades(host: Any):
    out = host.run("dpkg-query -W -f='${Status}' unattended-upgrades")
    assert "ok installed" not in out.stdout


# --- generalised ----------------------------------------------------------------------------------


@pytest.mark.unbooted_only
def test_machine_id_empty(host: Any):
    f = host.file("/etc/machine-id")
    assert f.exists and f.size == 0, "machine-id must be an empty file so each node gets its own"
    dbus = host.file("/var/lib/dbus/machine-id")
    assert not dbus.exists or (dbus.is_symlink and dbus.linked_to == "/etc/machine-id")


@pytest.mark.booted_only
def test_machine_id_generated_on_boot(host: Any):
    assert re.fullmatch(r"[0-9a-f]{32}", _read(host, "/etc/machine-id").strip())


@pytest.mark.unbooted_only
def test_no_ssh_host_keys(host: Any):
    assert host.run("ls /etc/ssh/ssh_host_* 2>/dev/null").stdout.strip() == ""


def test_no_build_user(host: Any):
    assert not host.user(BUILD_USER).exists
    assert not host.file(f"/home/{BUILD_USER}").exists


def test_no_build_user_in_account_or_sudo_files(host: Any):
    files = "/etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/sudoers /etc/sudoers.d"
    out = host.run(f"grep -rlw {BUILD_USER} {files}")
    if out.rc == 2 and "ermission denied" in out.stderr:
        pytest.skip("cannot read /etc/shadow or /etc/sudoers.d: run with --sudo")
    assert out.stdout.strip() == "", f"{BUILD_USER} still named in: {out.stdout.split()}"


def test_no_build_cloud_init_instance(host: Any):
    assert not host.file(f"/var/lib/cloud/instances/{BUILD_USER}").exists


@pytest.mark.unbooted_only
def test_no_cloud_init_state(host: Any):
    instances = host.file("/var/lib/cloud/instances")
    assert not instances.exists or instances.listdir() == []
    log = host.file("/var/log/cloud-init.log")
    assert not log.exists or log.size == 0


@pytest.mark.unbooted_only
def test_no_build_logs(host: Any):
    """No journal and no non-empty log file from the build (nodeimage-standins is skipped: running
    the stand-ins, as this suite does in a chroot, writes there)."""
    out = host.run("find /var/log -path /var/log/nodeimage-standins -prune -o -type f -size +0 -print")
    assert out.rc == 0, out.stderr
    assert out.stdout.split() == [], f"log files with content from the build: {out.stdout.split()}"


@pytest.mark.unbooted_only
def test_no_apt_lists(host: Any):
    lists = host.file("/var/lib/apt/lists")
    leftovers = [n for n in (lists.listdir() if lists.is_directory else []) if n not in ("partial", "lock")]
    assert leftovers == []


def test_no_stage_dir(host: Any):
    assert not host.file("/var/tmp/nodeimage").exists


@pytest.mark.unbooted_only
def test_no_shell_history(host: Any):
    assert not host.file("/root/.bash_history").exists


# --- real upstream behaviour ----------------------------------------------------------------------


@pytest.mark.needs_upstream
def test_crio_config_parses(host: Any):
    out = host.run("crio --config %s config", CRIO_CONF)
    assert out.rc == 0, out.stderr
    conf = tomllib.loads(out.stdout)
    assert conf["crio"]["runtime"]["cgroup_manager"] == "systemd"
    assert "kata-runtime" in conf["crio"]["runtime"]["runtimes"]


@pytest.mark.needs_upstream
def test_kubeadm_lists_images_offline(host: Any, expected: Expected):
    out = host.run("kubeadm config images list --kubernetes-version %s", expected.kubernetes)
    assert out.rc == 0, out.stderr
    assert f"kube-apiserver:{expected.kubernetes}" in out.stdout


@pytest.mark.needs_upstream
@pytest.mark.booted_only
def test_kata_check_on_kvm_host(host: Any):
    if host.run("test -r /dev/kvm -a -w /dev/kvm").rc != 0:
        pytest.skip("no usable /dev/kvm on this node: Kata pods must not be scheduled here")
    out = host.run("kata-runtime kata-check")
    assert out.rc == 0 and "System is capable of running Kata Containers" in out.stdout + out.stderr
