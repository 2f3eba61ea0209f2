# --- nodeimage stand-in: kata-runtime (tests/standins/programs/kata.py) ------------------------
# `kata-runtime kata-check` as read in kata-containers/runtime at 1.12.1 (R1: cli/kata-check.go,
# cli/kata-check_amd64.go, pkg/katautils/config.go) and kata-containers/kata-containers at 3.32.0
# (R3: src/runtime/cmd/kata-runtime): the configuration is found and loaded first, then the CPU
# and module checks run on this machine, and as root /dev/kvm must create a VM.

# The program is common.py followed by this file, without the import from common (make_standins.py).
import fcntl
import os
import sys

from common import ROOT, VERSION, bare, fail, last, p, parse_flags, read, which

KVM_CREATE_VM = 0xAE01  # _IO(KVMIO=0xAE, 0x01)
DEFAULT_PATHS = (
    "/etc/kata-containers/configuration.toml",
    "/opt/kata/share/defaults/kata-containers/configuration.toml",
)


def _toml(path):
    try:
        import tomllib
    except ImportError:
        fail("the kata-runtime stand-in needs Python 3.11 (tomllib)")
    with open(p(path), "rb") as fh:
        return tomllib.load(fh)


def _resolve(explicit):
    """R1 pkg/katautils/config.go:1432-1458, R3 pkg/katautils/config.go:2169-2195: --kata-config, else the first
    default that resolves (symlinks followed); the resolved path prefixes later errors."""
    paths = [explicit] if explicit else list(DEFAULT_PATHS)
    problems = []
    for path in paths:
        real = os.path.realpath(p(path))
        if os.path.exists(real):
            resolved = real[len(ROOT) :] if ROOT and real.startswith(ROOT) else real
            return path, real, resolved
        problems.append(f'config file "{path}" unresolvable: file {path} does not exist')
    fail("Cannot find usable config file (" + ", ".join(problems) + ")")


def load_configuration(explicit):
    """The whole configuration is loaded before any check, and any error is fatal (R1 cli/main.go:337-340;
    R3 src/runtime/cmd/kata-runtime/main.go:222-324)."""
    if not bare(VERSION).startswith("1."):
        return load_configuration_3(explicit)
    path, real, resolved = _resolve(explicit)
    conf = _toml(path)
    for name, hv in (conf.get("hypervisor") or {}).items():
        for key in ("path", "kernel", "image"):  # R1 config.go:598-719 (an empty value means the built-in default)
            value = hv.get(key)
            if value and not os.path.exists(p(value)):
                fail(f"{resolved}: file {value} does not exist")
        if name in ("firecracker", "fc") and not os.path.exists(p("/dev/vhost-vsock")):
            fail(f"{resolved}: No vsock support, firecracker cannot be used")
    for section in ("shim", "proxy"):
        for _, item in (conf.get(section) or {}).items():
            if item.get("path") and not os.path.exists(p(item["path"])):
                fail(f"{resolved}: file {item['path']} does not exist" if section == "shim" else
                     f"file {item['path']} does not exist")  # fmt: skip
    return conf


# R3 pkg/katautils/config.go:50-55 (table names) and config-settings.go.in:46-49 (defaults of an empty path/kernel)
HYPERVISORS_3 = ("firecracker", "clh", "qemu", "dragonball", "stratovirt", "remote")
DEFAULT_HYPERVISOR_PATH = "/usr/bin/qemu-system-x86_64"
DEFAULT_KERNEL_PATH = "/usr/share/kata-containers/vmlinuz.container"


def _merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def load_configuration_3(explicit):
    """R3 pkg/katautils/config.go: decode the resolved file, merge <its directory>/config.d/* in order
    (1818-1873), then per hypervisor table (1431-1466): an unknown table is an error; path and kernel must resolve
    (empty: the built-in defaults), image and initrd only when set (249-297); qemu with virtio-fs needs
    virtio_fs_daemon and, as the stratovirt loader, /dev/vhost-vsock (1005-1012; virtcontainers/utils/utils.go
    SupportsVsocks); default_memory may not be zero (checkHypervisorConfig, 2099-2160). No proxy or shim tables
    any more. Errors are prefixed with the resolved path."""
    import tomllib

    path, real, resolved = _resolve(explicit)
    conf = _toml(path)
    dropins = os.path.join(os.path.dirname(real), "config.d")
    if os.path.isdir(dropins):
        for name in sorted(os.listdir(dropins)):
            file = os.path.join(dropins, name)
            if not os.path.isfile(file):
                continue
            shown = file[len(ROOT) :] if ROOT and file.startswith(ROOT) else file
            try:
                with open(file, "rb") as fh:
                    _merge(conf, tomllib.load(fh))
            except tomllib.TOMLDecodeError as exc:
                fail(f'{resolved}: error decoding file "{shown}": {exc}')
    for name, hv in (conf.get("hypervisor") or {}).items():
        if name not in HYPERVISORS_3:
            fail(f'{resolved}: configuration file contains invalid hypervisor section: "{name}"')
        if name == "remote":
            continue
        for key, default in (("path", DEFAULT_HYPERVISOR_PATH), ("kernel", DEFAULT_KERNEL_PATH)):
            value = hv.get(key) or default
            if not os.path.exists(p(value)):
                fail(f"{resolved}: file {value} does not exist")
        for key in ("initrd", "image"):
            value = hv.get(key)
            if value and not os.path.exists(p(value)):
                fail(f"{resolved}: file {value} does not exist")
        if name == "qemu":
            shared = hv.get("shared_fs", "virtio-fs")
            if shared in ("virtio-fs", "virtio-fs-nydus") and not hv.get("virtio_fs_daemon"):
                fail(f"{resolved}: cannot enable {shared} without daemon path in configuration file")
        if name in ("qemu", "stratovirt") and not os.path.exists(p("/dev/vhost-vsock")):
            fail(f"{resolved}: host system doesn't support vsock: stat /dev/vhost-vsock: no such file or directory")
        if "default_memory" in hv and not hv["default_memory"]:
            fail(f"{resolved}: VM memory cannot be zero")
    return conf


def _cpu():
    text = read(p("/proc/cpuinfo"), "") or ""
    first = text.split("\n\n", 1)[0]
    if not first.strip():
        fail("Cannot determine CPU details")
    flags = next((ln.split(":", 1)[1].split() for ln in first.splitlines() if ln.startswith("flags")), None)
    if flags is None:
        fail("Cannot find CPU flags")
    return first, set(flags)


def _have_module(name, root):
    """R1 cli/kata-check.go:136-151: loaded means /sys/module/<name>; otherwise kata-check runs modprobe itself,
    whatever the uid. R3 src/runtime/cmd/kata-runtime/kata-check.go:135-158: only as root."""
    if os.path.isdir(p(f"/sys/module/{name}")):
        return True
    if not bare(VERSION).startswith("1.") and not root:
        print('level=error msg="Module is not loaded and it can not be inserted. Please consider running with sudo or '
              f'as root" module={name}', file=sys.stderr)  # fmt: skip
        return False
    if not ROOT and which("modprobe") and os.geteuid() == 0:
        import subprocess

        if subprocess.run(["modprobe", name], capture_output=True).returncode == 0:
            return os.path.isdir(f"/sys/module/{name}")
        print(f'level=warning msg="modprobe insert module failed: {name}"', file=sys.stderr)
    return False


def kata_check(flags):
    no_network = "no-network-checks" in flags or bool(os.environ.get("KATA_CHECK_NO_NETWORK"))
    root = os.geteuid() == 0 if not ROOT else os.environ.get("NODEIMAGE_STANDIN_EUID", "0") == "0"
    if not no_network:
        if root:
            print('level=warning msg="Not running network checks as super user"', file=sys.stderr)
        else:
            # R1 cli/release.go:270-273, R3 src/runtime/cmd/kata-runtime/release.go:33-57: a non-root check asks
            # GitHub for releases; any failure is fatal
            repo = "runtime" if bare(VERSION).startswith("1.") else "kata-containers"
            fail(f"Get https://api.github.com/repos/kata-containers/{repo}/releases: dial tcp: the nodeimage stand-in "
                 "has no network (run the check as root, or with --no-network-checks)")  # fmt: skip
    first, cpu_flags = _cpu()
    intel = "GenuineIntel" in first
    amd = "AuthenticAMD" in first
    old = bare(VERSION).startswith("1.")
    if not intel and not amd:
        fail("Unknow CPU Type" if old else "Unknown CPU Type")  # sic in R1 cli/kata-check_amd64.go:87-91; fixed in R3
    failures = []
    for flag in ("vmx" if intel else "svm", "lm", "sse4_1"):  # R1 cli/kata-check_amd64.go:111-198
        if flag not in cpu_flags:
            failures.append(f"CPU property not found: {flag}")
    for module, required in (("kvm", True), ("kvm_intel" if intel else "kvm_amd", True), ("vhost", True),
                             ("vhost_net", True), ("vhost_vsock", False)):  # fmt: skip
        if not _have_module(module, root):
            # R3 kata-check.go:232 "kernel property %s not found"; R1 logs "kernel property not found" name=<module>
            message = "kernel property not found" if old else f"kernel property {module} not found"
            print(f'level=error msg="{message}" name={module}', file=sys.stderr)
            if required:
                failures.append(f"kernel property not found: {module}")
    if failures:
        for f in failures:
            print(f'level=error msg="{f}"', file=sys.stderr)
        fail("ERROR: System is not capable of running Kata Containers")
    print("System is capable of running Kata Containers")
    if root:  # R1 cli/kata-check.go:438-514: open /dev/kvm and create a VM
        try:
            fd = os.open(p("/dev/kvm"), os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            fail(exc.strerror.lower() if exc.strerror else str(exc))
        try:
            if not ROOT:
                vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
                os.close(vm)
        except OSError as exc:
            fail(f"cannot create VM: {exc}")
        finally:
            os.close(fd)
        print("System can currently create Kata Containers")
    return 0


def main(args):
    flags, positionals, unknown = parse_flags(
        args, {"kata-config", "config", "log", "log-format"},
        booleans={"no-network-checks", "strict", "verbose", "check-version-only", "only-list-releases",
                  "include-all-releases", "version", "help", "show-default-config-paths"},
        aliases={"n": "no-network-checks", "s": "strict", "v": "version"},
    )  # fmt: skip
    if "version" in flags or positionals[:1] == ["version"]:
        print(f"kata-runtime  : {bare(VERSION)}")
        print("   commit   : nodeimage-standin")
        print("   OCI specs: " + ("1.0.1-dev" if bare(VERSION).startswith("1.") else "1.2.1"))
        return 0
    commands = ("kata-check",) if bare(VERSION).startswith("1.") else ("check", "kata-check")
    if positionals[:1] and positionals[0] in commands:
        if "config" in flags and bare(VERSION).startswith("1."):
            fail("flag provided but not defined: -config")  # 1.12.1 has --kata-config only
        load_configuration(last(flags, "kata-config") or last(flags, "config"))
        return kata_check(flags)
    if unknown:
        fail(f"flag provided but not defined: {unknown[0]}")
    return 0
