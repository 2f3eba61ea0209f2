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


def load_crictl_config(path):
    """/etc/crictl.yaml (or --config / CRI_CONFIG_FILE). v1.17.0 ignores unknown keys; a bad value is fatal
    with upstream's own spelling, "Falied to load config file" (T17 cmd/crictl/main.go)."""
    text = read(p(path))
    if text is None:
        return {}
    docs = load_yaml_docs(text) or [{}]
    conf = docs[0] or {}
    if not isinstance(conf, dict):
        fail(f"Falied to load config file: {path} is not a mapping")
    known = CONFIG_KEYS_17 if minor() < 18 else CONFIG_KEYS_36
    unknown = sorted(k for k in conf if k not in known)
    if unknown and minor() >= 18:
        fail(f"Config option '{unknown[0]}' is not valid")  # T36: an error (fatal with -c / CRI_CONFIG_FILE)
    timeout = conf.get("timeout", 2)
    if not isinstance(timeout, int) or isinstance(timeout, bool):  # T17: whole seconds
        fail(f"Falied to load config file: timeout must be a whole number of seconds, got {timeout!r}")
    for key in ("debug", "pull-image-on-create", "disable-pull-on-run"):
        if key in conf and not isinstance(conf[key], bool):
            fail(f"Falied to load config file: {key} must be true or false, got {conf[key]!r}")
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
    conf = load_crictl_config(last(flags, "config", os.environ.get("CRI_CONFIG_FILE", "/etc/crictl.yaml")))
    endpoint = last(flags, "runtime-endpoint") or conf.get("runtime-endpoint")
    image_endpoint = last(flags, "image-endpoint") or conf.get("image-endpoint") or endpoint
    if not endpoint:
        # T17 falls back to unix:///var/run/dockershim.sock with a warning, where no CRI-O answers
        print("WARN runtime connect using default endpoints: [unix:///var/run/dockershim.sock]", file=sys.stderr)
        endpoint = "unix:///var/run/dockershim.sock"
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
