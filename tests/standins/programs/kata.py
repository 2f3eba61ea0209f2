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


def load_configuration(explicit):
    """R1 pkg/katautils/config.go:1201-1306, 1432-1458: --kata-config, else the first default that resolves."""
    paths = [explicit] if explicit else list(DEFAULT_PATHS)
    problems = []
    for path in paths:
        real = os.path.realpath(p(path))
        if os.path.exists(real):
            break
        problems.append(f'config file "{path}" unresolvable: file {path} does not exist')
    else:
        fail("Cannot find usable config file (" + ", ".join(problems) + ")")
    conf = _toml(path)
    resolved = real[len(ROOT) :] if ROOT and real.startswith(ROOT) else real
    for name, hv in (conf.get("hypervisor") or {}).items():
        for key in ("path", "kernel", "image"):  # R1 config.go:598-719 (an empty value means the built-in default)
            value = hv.get(key)
            if value and not os.path.exists(p(value)):
                fail(f"{resolved}: file {value} does not exist")
        if name in ("firecracker", "fc") and not os.path.exists(p("/dev/vhost-vsock")):
            fail(f"{resolved}: No vsock support, firecracker cannot be used")
        if not bare(VERSION).startswith("1.") and not os.path.exists(p("/dev/vhost-vsock")):
            fail(f"{resolved}: host system doesn't support vsock")  # R3: the qemu loader needs /dev/vhost-vsock
    for section in ("shim", "proxy"):
        for _, item in (conf.get(section) or {}).items():
            if item.get("path") and not os.path.exists(p(item["path"])):
                fail(f"{resolved}: file {item['path']} does not exist" if section == "shim" else
                     f"file {item['path']} does not exist")  # fmt: skip
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


def _have_module(name):
    """R1 cli/kata-check.go:136-151: loaded means /sys/module/<name>; otherwise kata-check runs modprobe itself."""
    if os.path.isdir(p(f"/sys/module/{name}")):
        return True
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
            # R1 cli/release.go:270-273: a non-root check asks GitHub for releases; any failure is fatal
            fail("Get https://api.github.com/repos/kata-containers/runtime/releases: dial tcp: the nodeimage stand-in "
                 "has no network (run kata-check as root, or with --no-network-checks)")  # fmt: skip
    first, cpu_flags = _cpu()
    intel = "GenuineIntel" in first
    amd = "AuthenticAMD" in first
    if not intel and not amd:
        fail("Unknow CPU Type")  # sic: R1 cli/kata-check_amd64.go:87-91
    failures = []
    for flag in ("vmx" if intel else "svm", "lm", "sse4_1"):  # R1 cli/kata-check_amd64.go:111-198
        if flag not in cpu_flags:
            failures.append(f"CPU property not found: {flag}")
    for module, required in (("kvm", True), ("kvm_intel" if intel else "kvm_amd", True), ("vhost", True),
                             ("vhost_net", True), ("vhost_vsock", False)):  # fmt: skip
        if not _have_module(module):
            print(f'level=error msg="kernel property not found" name={module}', file=sys.stderr)
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
