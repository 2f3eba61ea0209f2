"""Acceptance tests for a nodeimage node image, un-booted (chroot) or booted (ssh).

Each check reads the image through testinfra's ``host``; expectations come from
this checkout (see conftest.py). Checks that need a running image are marked
``booted_only``; checks of what a first boot regenerates are ``unbooted_only``;
checks of real upstream behaviour are ``needs_upstream``.
"""

from __future__ import annotations

import json
import posixpath
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


def merged_crio_config(read: Any, exists: Any, listdir: Any) -> dict[str, Any]:
    """CRI-O's configuration as CRI-O merges it: /etc/crio/crio.conf if present, then every file of
    /etc/crio/crio.conf.d in lexical order, later keys winning and a [crio.runtime.runtimes.X] table replacing X
    whole (cri-o pkg/config/config.go UpdateFromFile/UpdateFromPath, v1.17.2 and v1.36.3)."""
    import tomllib

    conf: dict[str, Any] = {}

    def merge(into: dict[str, Any], data: dict[str, Any], path: tuple[str, ...] = ()) -> None:
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict) and path != ("crio", "runtime", "runtimes"):
                merge(into[key], value, (*path, key))
            else:
                into[key] = value

    files = ["/etc/crio/crio.conf"] if exists("/etc/crio/crio.conf") else []
    if exists("/etc/crio/crio.conf.d"):
        files += [f"/etc/crio/crio.conf.d/{n}" for n in sorted(listdir("/etc/crio/crio.conf.d"))]
    for path in files:
        merge(conf, tomllib.loads(read(path)))
    conf["__files__"] = files
    return conf


# CNI reference plugins per release line (containernetworking/plugins build_linux.sh: plugins/{meta,main,ipam}/*
# at v0.8.7 and v1.9.1): v1.0 dropped flannel (Flannel installs its own) and added dummy, tap, vrf.
CNI_PLUGINS_0 = ("bandwidth", "bridge", "dhcp", "firewall", "flannel", "host-device", "host-local", "ipvlan",
                 "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tuning", "vlan")  # fmt: skip
CNI_PLUGINS_1 = ("bandwidth", "bridge", "dhcp", "dummy", "firewall", "host-device", "host-local", "ipvlan",
                 "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tap", "tuning", "vlan", "vrf")  # fmt: skip


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
# The component column is the classic stack's; the one checked is the artifact the profile's stack installs the
# program from (/usr/local/bin/<tool>), e.g. kubelet from "kubelet" in the current stack.
BINDIR = "/usr/local/bin"


@pytest.mark.parametrize(("tool", "command", "component", "line"), VERSIONS, ids=[v[0] for v in VERSIONS])
def test_binary_at_pinned_version(host: Any, expected: Expected, tool: str, command: str, component: str, line: str):
    installed = expected.installed_from(f"{BINDIR}/{tool}")
    if installed is None:
        pytest.skip(f"stack {expected.stack} puts no {tool} on PATH (CRI-O's 1.36 bundle keeps conmon in "
                    "/usr/libexec/crio: see test_crio_monitor_is_executable)")  # fmt: skip
    component = installed
    if tool == "kubectl" and expected.kubernetes_minor >= 28:
        command = "kubectl version --client"  # --short went in 1.28 (kubernetes/kubectl v0.28.0 version.go)
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
def test_binary_installed_root_owned(host: Any, expected: Expected, path: str, mode: int):
    if expected.installed_from(path) is None:
        pytest.skip(f"stack {expected.stack} installs nothing at {path} (test_stack_install_in_place checks its own)")
    f = host.file(path)
    assert f.is_file and f.user == "root" and f.mode == mode, f"{path}: {f.user} {oct(f.mode)}"


def test_stack_install_in_place(host: Any, expected: Expected):
    """Every install of the stack (nodeimage/stacks: file, tree, link) is where the stack put it, root-owned, with
    its mode: CRI-O 1.36's bundle files under /usr/libexec/crio and /etc/crio as much as kubelet in /usr/local/bin."""
    wrong = []
    for op in expected.installs:
        f = host.file(op.dest)
        if op.kind == "link":  # linked_to resolves the link (readlink -f): resolve a relative target alike
            ok = f.is_symlink and f.linked_to == posixpath.normpath(posixpath.join(posixpath.dirname(op.dest),
                                                                                    op.member))  # fmt: skip
        elif op.kind == "tree":
            ok = f.is_directory and f.user == "root"
        else:
            ok = f.is_file and f.user == "root" and f.mode == op.mode
        if not ok:
            wrong.append(f"{op.kind} {op.dest}")
    assert not wrong, f"not as the stack installs them: {wrong}"


def test_kata_runtime_linked_into_path(host: Any):
    link = host.file("/usr/local/bin/kata-runtime")
    assert link.is_symlink and link.linked_to == "/opt/kata/bin/kata-runtime"
    assert host.file("/opt/kata/share/defaults/kata-containers/configuration.toml").exists


# --- CRI-O configuration -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crio_conf(host: Any) -> dict[str, Any]:
    """CRI-O's configuration as CRI-O reads it: crio.conf (the classic stack) and/or the drop-in directory (the
    current stack's bundle 10-crio.conf and nodeimage's files), merged (conftest.merged_crio_config)."""
    conf = merged_crio_config(lambda path: _read(host, path), lambda path: host.file(path).exists,
                              lambda path: host.file(path).listdir())  # fmt: skip
    assert conf["__files__"], f"no CRI-O configuration: neither {CRIO_CONF} nor /etc/crio/crio.conf.d/"
    return conf


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
# Settings every stack's CRI-O must have (the kubelet's systemd driver, the socket first boot and kubeadm use,
# the directory the CNI writes to); the rest of CRIO_SETTINGS are the classic stack's crio.conf, and each stack's
# own rendered settings are checked by test_crio_setting_the_stack_renders.
CRIO_COMMON = {"crio|runtime|cgroup_manager", "crio|runtime|conmon_cgroup", "crio|network|network_dir",
               "crio|api|listen"}  # fmt: skip


@pytest.mark.parametrize(("key", "value"), CRIO_SETTINGS, ids=[k.replace("|", ".") for k, _ in CRIO_SETTINGS])
def test_crio_conf_setting(crio_conf: dict[str, Any], expected: Expected, key: str, value: Any):
    if key not in CRIO_COMMON and CRIO_CONF not in expected.rendered:
        pytest.skip(f"a setting of the classic stack's {CRIO_CONF}; stack {expected.stack} renders its own (below)")
    assert _dig(crio_conf, key) == value


def _settings(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and not prefix.endswith("|runtimes|"):
            out += _settings(value, f"{prefix}{key}|")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def test_crio_setting_the_stack_renders(crio_conf: dict[str, Any], expected: Expected):
    """Every setting the stack writes into CRI-O's configuration is in effect in the merged configuration (no
    later file overrides it; a runtime handler is compared whole)."""
    rendered = [(path, text) for path, text in expected.rendered.items() if path.startswith("/etc/crio/")]
    assert rendered, f"stack {expected.stack} renders no CRI-O configuration"
    for path, text in rendered:
        for key, value in _settings(tomllib.loads(text)):
            assert _dig(crio_conf, key) == value, f"{path} sets {key.replace('|', '.')} = {value!r}"


@pytest.mark.parametrize("path", HOOKS_DIRS)
def test_crio_hooks_dir_exists(host: Any, crio_conf: dict[str, Any], expected: Expected, path: str):
    if "hooks_dir" not in crio_conf.get("crio", {}).get("runtime", {}) and path not in expected.unit.directories(
        expected.settings
    ):
        pytest.skip("CRI-O's default hooks directory: CRI-O 1.36 creates it when missing (pkg/config/config.go)")
    assert path in _dig(crio_conf, "crio|runtime|hooks_dir")
    assert host.file(path).is_directory, f"{path} is missing: CRI-O 1.17.2 would exit at start (invalid hooks_dir)"


def test_kata_handler_does_not_pass_host_devices(crio_conf: dict[str, Any], expected: Expected):
    """As kata-deploy writes it: without it a privileged Kata pod gets every device of the host
    (cri-o v1.17.2 pkg/config/config.go RuntimeHandler; kata-containers/packaging 1.12.1 kata-deploy.sh)."""
    handler = expected.kata_handler
    assert _dig(crio_conf, f"crio|runtime|runtimes|{handler}|privileged_without_host_devices") is True


def test_kata_handler_is_the_stacks(crio_conf: dict[str, Any], expected: Expected):
    """The handler the RuntimeClass names, as the stack defines it (Kata 1.x: kata-runtime, "oci"; Kata 3: the
    containerd shim v2, "vm", with its configuration: kata-containers 3.32.0 kata-deploy crio.rs)."""
    assert _dig(crio_conf, f"crio|runtime|runtimes|{expected.kata_handler}") == expected.unit.kata.table()


def test_kata_handler_files_exist(host: Any, crio_conf: dict[str, Any], expected: Expected):
    handler = _dig(crio_conf, f"crio|runtime|runtimes|{expected.kata_handler}")
    assert host.run("test -x %s", handler["runtime_path"]).rc == 0, handler["runtime_path"]
    if handler.get("runtime_config_path"):
        assert host.file(handler["runtime_config_path"]).exists, handler["runtime_config_path"]


def test_pause_image_from_the_profile_registry(crio_conf: dict[str, Any], expected: Expected):
    """k8s.gcr.io (CRI-O 1.17's and kubeadm 1.17's default) is frozen: the pause image comes from the profile's,
    at the version the stack's kubeadm uses (1.17: 3.1; 1.36: 3.10.2)."""
    pause = _dig(crio_conf, "crio|image|pause_image")
    assert pause == expected.pause_image, pause
    assert pause.startswith(f"{expected.image_repository}/pause:")


def test_crio_cni_plugin_dirs_include_opt_cni_bin(crio_conf: dict[str, Any]):
    dirs = [d.rstrip("/") for d in _dig(crio_conf, "crio|network|plugin_dirs")]
    assert "/opt/cni/bin" in dirs


@pytest.mark.parametrize("runtime", ["default", "kata"])
def test_crio_runtime_path_is_executable(host: Any, crio_conf: dict[str, Any], expected: Expected, runtime: str):
    """The default runtime (runc in the classic stack, the bundle's crun in the current one) and Kata's handler."""
    name = _dig(crio_conf, "crio|runtime|default_runtime") if runtime == "default" else expected.kata_handler
    path = _dig(crio_conf, f"crio|runtime|runtimes|{name}|runtime_path")
    assert path, f"runtime {name} has no runtime_path"
    assert host.run("test -x %s", path).rc == 0, f"{name} runtime_path {path} is not executable"


def test_crio_pinns_path_is_executable(host: Any, crio_conf: dict[str, Any]):
    """manage_ns_lifecycle needs pinns (1.17); 1.36 always does (pkg/config/config.go ValidatePinnsPath): the
    configured path, or pinns on PATH when none is set."""
    path = crio_conf.get("crio", {}).get("runtime", {}).get("pinns_path")
    if path:
        assert host.run("test -x %s", path).rc == 0, f"pinns_path {path} is not executable"
    else:
        assert host.exists("pinns"), "no pinns_path and no pinns on PATH"


def test_crio_monitor_is_executable(host: Any, crio_conf: dict[str, Any]):
    """conmon, for every runc-like handler: the global conmon, else each handler's monitor_path (cri-o v1.36.3
    pkg/config/config.go TranslateMonitorFields), else conmon on PATH."""
    runtime = crio_conf.get("crio", {}).get("runtime", {})
    for name, handler in runtime.get("runtimes", {}).items():
        if handler.get("runtime_type", "oci") not in ("", "oci"):
            continue
        path = runtime.get("conmon") or handler.get("monitor_path")
        if path:
            assert host.run("test -x %s", path).rc == 0, f"conmon of {name}: {path} is not executable"
        else:
            assert host.exists("conmon"), f"handler {name} has no monitor and conmon is not on PATH"


def test_short_image_names_resolve_on_docker_hub(host: Any, crio_conf: dict[str, Any]):
    """The Weave manifest names weaveworks/weave-kube:<v> without a registry (registries.conf, or a file of
    registries.conf.d as CRI-O 1.36's bundle installs it: containers-registries.conf.d(5))."""
    registries = crio_conf.get("crio", {}).get("image", {}).get("registries", [])
    unqualified = []
    files = ["/etc/containers/registries.conf"]
    confd = host.file("/etc/containers/registries.conf.d")
    if confd.is_directory:
        files += [f"/etc/containers/registries.conf.d/{n}" for n in sorted(confd.listdir()) if n.endswith(".conf")]
    for path in files:
        conf = host.file(path)
        if conf.exists:
            unqualified += tomllib.loads(conf.content_string).get("unqualified-search-registries", [])
    assert "docker.io" in registries or "docker.io" in unqualified


@pytest.mark.parametrize("name", ["100-crio-bridge.conf", "200-loopback.conf", "10-crio-bridge.conf"])
def test_no_crio_default_cni_config(host: Any, name: str):
    assert not host.file(f"/etc/cni/net.d/{name}").exists, "CRI-O's default CNI config would preempt Weave"


def test_crictl_points_at_crio(host: Any):
    conf = yaml.safe_load(_read(host, "/etc/crictl.yaml"))
    assert conf["runtime-endpoint"] == "unix:///var/run/crio/crio.sock"


@pytest.mark.parametrize("plugin", sorted(set(CNI_PLUGINS) | {"dummy", "tap", "vrf"}))
def test_cni_plugin_installed(host: Any, expected: Expected, plugin: str):
    """Every plugin of the pinned CNI plugins release (its line's list: conftest CNI_PLUGINS_0/CNI_PLUGINS_1)."""
    artifact = expected.installed_from("/opt/cni/bin")
    assert artifact, "the stack installs no CNI plugins"
    release = CNI_PLUGINS_0 if expected.bare(artifact).startswith("0.") else CNI_PLUGINS_1
    if plugin not in release:
        pytest.skip(f"CNI plugins {expected.version(artifact)} have no {plugin}")
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
def test_kubelet_crio_flag(kubelet_units: str, expected: Expected, flag: str):
    """1.17 needs the flags; from 1.27 --container-runtime is gone (the kubelet refuses it) and the endpoint and
    cgroup driver belong in the KubeletConfiguration, so the unit must not pass them."""
    if expected.kubernetes_minor >= 27:
        assert flag.split("=")[0] not in kubelet_units, f"{flag.split('=')[0]} in the kubelet's unit"
        return
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
    if expected.kubernetes_minor >= 20 or expected.unit.iptables != "legacy":
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
    assert set(images) == set(expected.cni_images), "the manifest runs other images than the baked ones"
    if expected.cni == "flannel":
        # flannel-io/flannel v0.28.9 kube-flannel.yml: DaemonSet kube-flannel-ds, the pod network in net-conf.json
        ds = next(i for i in items if i["kind"] == "DaemonSet" and i["metadata"]["name"] == "kube-flannel-ds")
        assert [c["name"] for c in ds["spec"]["template"]["spec"]["containers"]] == ["kube-flannel"]
        cm = next(i for i in items if i["kind"] == "ConfigMap" and i["metadata"]["name"] == "kube-flannel-cfg")
        assert "Network" in json.loads(cm["data"]["net-conf.json"])
        assert not [c for p in pods for c in p.get("containers", []) if c.get("imagePullPolicy") == "Always"]
    if expected.cni in ("weave", "weave-rajch"):
        ds = next(i for i in items if i["kind"] == "DaemonSet" and i["metadata"]["name"] == "weave-net")
        pod = ds["spec"]["template"]["spec"]
        assert {c["name"] for c in pod["containers"]} == {"weave", "weave-npc"}
        assert [c["name"] for c in pod.get("initContainers", [])] == ["weave-init"]
        version = expected.bare(expected.unit_cni.artifact)
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
    assert rc["handler"] == expected.kata_handler
    assert tuple(data.get("kata_check", ())) == expected.unit.kata_check
    assert data["cni"]["pod_cidr"] == expected.unit_cni.patch.as_dict()


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
    # the backups too (shadow-utils keeps the state before each change in <file>-), and the subordinate ids
    names = "passwd group shadow gshadow subuid subgid"
    files = " ".join(f"/etc/{n} /etc/{n}-" for n in names.split()) + " /etc/sudoers /etc/sudoers.d"
    present = host.run(f"ls -d {files} 2>/dev/null").stdout.split()
    out = host.run(f"grep -rlw {BUILD_USER} {' '.join(present)}")
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
def test_crio_config_parses(host: Any, expected: Expected):
    """`crio config` merges crio.conf (when there is one) and the drop-in directory, and validates them."""
    out = host.run("crio --config %s config", CRIO_CONF) if host.file(CRIO_CONF).exists else host.run("crio config")
    assert out.rc == 0, out.stderr
    conf = tomllib.loads(out.stdout)
    assert conf["crio"]["runtime"]["cgroup_manager"] == "systemd"
    assert expected.kata_handler in conf["crio"]["runtime"]["runtimes"]


@pytest.mark.needs_upstream
def test_kubeadm_lists_images_offline(host: Any, expected: Expected):
    out = host.run("kubeadm config images list --kubernetes-version %s", expected.kubernetes)
    assert out.rc == 0, out.stderr
    assert f"kube-apiserver:{expected.kubernetes}" in out.stdout


@pytest.mark.needs_upstream
@pytest.mark.booted_only
def test_kata_check_on_kvm_host(host: Any, expected: Expected):
    if host.run("test -r /dev/kvm -a -w /dev/kvm").rc != 0:
        pytest.skip("no usable /dev/kvm on this node: Kata pods must not be scheduled here")
    out = host.run(" ".join(expected.unit.kata_check))
    assert out.rc == 0 and "System is capable of running Kata Containers" in out.stdout + out.stderr
