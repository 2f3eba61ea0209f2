# --- nodeimage stand-in: crictl (tests/standins/programs/crictl.py) ----------------------------
# crictl's configuration and the commands kubeadm runs (info, inspecti, pull), read in
# kubernetes-sigs/cri-tools at v1.17.0 (T17) and v1.36.0 (T36). The answers come from the
# stand-in CRI-O over its socket, so they depend on CRI-O running with a valid configuration.

# The program is common.py followed by this file, without the import from common (make_standins.py).
import json
import os
import sys

from common import VERSION, cri_request, fail, last, load_yaml_docs, minor, p, parse_flags, read, vee

CONFIG_KEYS_17 = {"runtime-endpoint", "image-endpoint", "timeout", "debug"}  # T17 cmd/crictl/config.go
CONFIG_KEYS_36 = CONFIG_KEYS_17 | {"pull-image-on-create", "disable-pull-on-run"}  # T36 pkg/common/file.go
COMMANDS = {"info", "version", "inspecti", "images", "img", "pull", "ps", "pods", "rmi", "inspect", "config"}


class ConfigProblem(Exception):
    pass


def load_crictl_config(path, explicit=False):
    """/etc/crictl.yaml (or --config / CRI_CONFIG_FILE). v1.17.0 ignores unknown keys; a bad value is fatal
    with upstream's own spelling, "Falied to load config file" (T17 cmd/crictl/main.go:158-228). v1.36.0
    refuses an unknown key or a bad value (T36 pkg/common/file.go:109-163), but that is fatal only when the file
    was named (-c or CRI_CONFIG_FILE); otherwise the whole file is dropped without a message and crictl goes on
    with its defaults (T36 cmd/crictl/main.go:325-333)."""
    text = read(p(path))
    if text is None:
        return {}
    docs = load_yaml_docs(text) or [{}]
    conf = docs[0] or {}
    new = minor() >= 18
    try:
        if not isinstance(conf, dict):
            raise ConfigProblem(f"{path} is not a mapping")
        known = CONFIG_KEYS_17 if not new else CONFIG_KEYS_36
        unknown = sorted(k for k in conf if k not in known)
        if unknown and new:
            raise ConfigProblem(f"Config option '{unknown[0]}' is not valid")
        timeout = conf.get("timeout", 2)
        if not isinstance(timeout, int) or isinstance(timeout, bool):  # T17: whole seconds; T36: strconv.Atoi
            raise ConfigProblem(f"timeout must be a whole number of seconds, got {timeout!r}" if not new else
                                f"parsing config option 'timeout': strconv.Atoi: parsing {str(timeout)!r}: "
                                "invalid syntax")  # fmt: skip
        for key in ("debug", "pull-image-on-create", "disable-pull-on-run"):
            if key in conf and not isinstance(conf[key], bool):
                raise ConfigProblem(f"{key} must be true or false, got {conf[key]!r}" if not new else
                                    f"parsing config option '{key}': strconv.ParseBool: invalid syntax")  # fmt: skip
    except ConfigProblem as exc:
        if not new:
            fail(f"Falied to load config file: {exc}")
        if explicit:
            fail(f'level=fatal msg="load config file: {exc}"')
        return {}
    return conf


def main(args):
    if "--version" in args or "-v" in args:
        print("crictl version " + vee(VERSION))  # release binaries carry the "v"
        return 0
    flags, positionals, unknown = parse_flags(
        args,
        {"runtime-endpoint", "image-endpoint", "timeout", "config", "output"},
        booleans={"debug", "verbose", "quiet", "all", "help"},
        aliases={"r": "runtime-endpoint", "i": "image-endpoint", "t": "timeout", "c": "config", "D": "debug",
                 "o": "output", "q": "quiet", "a": "all", "h": "help"},
    )  # fmt: skip
    if unknown:
        fail(f"Incorrect Usage: flag provided but not defined: {unknown[0]}")
    command = positionals[0] if positionals else None
    if command not in COMMANDS:
        fail(f"No help topic for '{command}'" if command else "crictl: no command given")
    explicit = "config" in flags or "CRI_CONFIG_FILE" in os.environ
    conf = load_crictl_config(last(flags, "config", os.environ.get("CRI_CONFIG_FILE", "/etc/crictl.yaml")), explicit)
    endpoint = last(flags, "runtime-endpoint") or conf.get("runtime-endpoint")
    image_endpoint = last(flags, "image-endpoint") or conf.get("image-endpoint") or endpoint
    if not endpoint and minor() < 18:
        # T17 falls back to unix:///var/run/dockershim.sock with a warning, where no CRI-O answers
        print("WARN runtime connect using default endpoints: [unix:///var/run/dockershim.sock]", file=sys.stderr)
        endpoint = "unix:///var/run/dockershim.sock"
    elif not endpoint:
        # T36 cmd/crictl/main.go:95-119 and main_unix.go:30: the deprecated default endpoints, tried in order
        defaults = ["unix:///run/containerd/containerd.sock", "unix:///run/crio/crio.sock",
                    "unix:///var/run/cri-dockerd.sock"]  # fmt: skip
        print(f"WARN runtime connect using default endpoints: {defaults}. As the default settings are now deprecated, "
              "you should set the endpoint instead.", file=sys.stderr)  # fmt: skip
        endpoint = next((e for e in defaults if os.path.exists(p(e[len("unix://") :]))), defaults[0])
        image_endpoint = image_endpoint or endpoint
    target = image_endpoint if command in ("inspecti", "images", "img", "pull", "rmi") else endpoint
    request = {"info": "INFO", "version": "VERSION", "images": "IMAGES", "img": "IMAGES"}.get(command)
    if command in ("inspecti", "pull", "rmi"):
        if len(positionals) < 2:
            fail(f"ID cannot be empty for {command}")
        request = ("PULL " if command == "pull" else "IMAGE ") + positionals[1]
    if request is None:
        print(json.dumps({"items": []}))
        return 0
    timeout = float(last(flags, "timeout", conf.get("timeout", 2)) or 2)
    try:
        answer = cri_request(target, request, timeout=max(timeout, 2))
    except (OSError, ValueError) as exc:
        fail(f"FATA[0000] connect: connect endpoint '{target}', make sure you are running as root and the endpoint has "
             f"been started: {exc}")  # fmt: skip
    if "error" in answer:
        fail(f"FATA[0000] {answer['error']}")
    if command == "version":
        print(
            f"Version:  {answer['version']}\nRuntimeName:  {answer['runtimeName']}\n"
            f"RuntimeVersion:  {answer['runtimeVersion']}\nRuntimeApiVersion:  {answer['runtimeApiVersion']}"
        )
    elif command == "pull":
        print(f"Image is up to date for {positionals[1]}")
    else:
        print(json.dumps(answer, indent=2))
    return 0
