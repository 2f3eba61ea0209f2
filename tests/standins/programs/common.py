# --- nodeimage stand-in: shared helpers (tests/standins/programs/common.py) -------------------
# Every stand-in program is this file, then its tool's module, then a call of main(); the build
# installs it where the real binary goes. Paths the program reads or writes are prefixed with
# $NODEIMAGE_STANDIN_ROOT (the stand-ins' own tests set it; on a node it is empty).

import json
import os
import shutil
import signal
import socket
import sys
import time

TOOL = "@TOOL@"
VERSION = "@VERSION@"  # as pinned in the lock, e.g. v1.17.17 or 1.12.1
ROOT = os.environ.get("NODEIMAGE_STANDIN_ROOT", "")
LOG_DIR = ROOT + "/var/log/nodeimage-standins"
CRIO_SOCKET = "/var/run/crio/crio.sock"


def p(path):
    """A host path as this stand-in sees it (under NODEIMAGE_STANDIN_ROOT in its own tests)."""
    return ROOT + path


def q(value):
    """Go's %q: a double-quoted string (the form upstream's messages use)."""
    return json.dumps(str(value))


def bare(version):
    return version[1:] if version.startswith("v") else version


def vee(version):
    return version if version.startswith("v") else "v" + version


def minor(version=VERSION):
    return int(bare(version).split(".")[1])


def record():
    """Append this invocation to the tool's log; best effort (non-root callers cannot write)."""
    try:
        os.makedirs(LOG_DIR, exist_ok=True)
        with open(os.path.join(LOG_DIR, TOOL + ".log"), "a") as log:
            log.write(json.dumps(sys.argv) + "\n")
    except OSError:
        pass


def note(name, line):
    """Append one line to a stand-in record file (e.g. which images kubeadm found present)."""
    try:
        os.makedirs(LOG_DIR, exist_ok=True)
        with open(os.path.join(LOG_DIR, name), "a") as fh:
            fh.write(line + "\n")
    except OSError:
        pass


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def fail(message, code=1):
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def which(program):
    return shutil.which(program)


def parse_flags(args, takes_value, booleans=(), aliases=None):
    """pflag/urfave-style parsing: --name=value, --name value, boolean --name[=true|false], -x aliases.

    Returns (flags: name -> list of values, positionals, unknown flags). A flag in neither
    ``takes_value`` nor ``booleans`` is unknown.
    """
    aliases = aliases or {}
    flags, positionals, unknown = {}, [], []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positionals += args[i + 1 :]
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.lstrip("-").partition("=")
            name = aliases.get(name, name).replace("_", "-")
            if name in booleans:
                flags.setdefault(name, []).append(value if eq else "true")
            elif name in takes_value:
                if not eq:
                    i += 1
                    if i >= len(args):
                        unknown.append(arg + " (needs a value)")
                        break
                    value = args[i]
                flags.setdefault(name, []).append(value)
            else:
                unknown.append(arg)
        else:
            positionals.append(arg)
        i += 1
    return flags, positionals, unknown


def last(flags, name, default=None):
    values = flags.get(name)
    return values[-1] if values else default


def wait_for_sigterm(ready=None):
    """Run like a daemon until SIGTERM/SIGINT; ``ready`` runs once before waiting."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    if ready:
        ready()
    while not stop:
        time.sleep(0.05)  # short: a SIGTERM is acted on at once (the tests stop many daemons)


def sd_notify(message):
    """Send a notification from this (the main) process, as Type=notify with NotifyAccess=main wants."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


def cri_request(endpoint, request, timeout=10.0):
    """One request to the stand-in CRI-O over its socket: a line out, a JSON line back.

    (The real CRI is gRPC; the stand-ins speak this line protocol to each other so that crictl's
    answer depends on CRI-O really running with a valid configuration.)
    """
    path = endpoint[len("unix://") :] if endpoint.startswith("unix://") else endpoint
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(p(path))
        sock.sendall((request + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data.decode() or "{}")


def systemctl(*args):
    """systemctl on the node (the stand-ins' own tests have none: it is then a no-op that fails)."""
    import subprocess

    if ROOT or not which("systemctl"):
        return 1
    return subprocess.run(["systemctl", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def load_yaml_docs(text):
    """YAML documents as data: PyYAML where the node has it (cloud-init needs it), else JSON only."""
    try:
        import yaml
    except ImportError:
        return [json.loads(text)]
    return [d for d in yaml.safe_load_all(text) if d is not None]
