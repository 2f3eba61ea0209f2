# --- nodeimage stand-in: conmon, pinns, CNI plugins and the rest (tests/standins/programs/simple.py) ----
# Programs the node image only installs and asks for their version: conmon (containers/conmon
# v2.0.10 src/conmon.c: "conmon version %s\ncommit: %s"), the CNI reference plugins
# (containernetworking/plugins: CNI_COMMAND=VERSION answers the supported versions; without it
# the "about" line "CNI <name> plugin <version>"), and tools under /opt/kata.

# The program is common.py followed by this file, without the import from common (make_standins.py).
import json
import os
import sys

from common import TOOL, VERSION, bare, minor, vee

KIND = "@KIND@"


def main(args):
    if KIND == "conmon":
        if "--version" in args:
            print("conmon version " + bare(VERSION))
            print("commit: nodeimage-standin")
        return 0
    if KIND == "cni":
        command = os.environ.get("CNI_COMMAND")
        spec = "0.4.0" if minor() < 9 and bare(VERSION).startswith("0.") else "1.1.0"
        if command == "VERSION":
            versions = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"] + (["1.0.0", "1.1.0"] if spec == "1.1.0" else [])
            print(json.dumps({"cniVersion": spec, "supportedVersions": versions}))
            return 0
        if command:
            print(json.dumps({"cniVersion": spec, "code": 100, "msg": "nodeimage test stand-in: no networking"}))
            return 1
        print(f"CNI {TOOL} plugin {vee(VERSION)}", file=sys.stderr)
        return 0
    if "--version" in args or "-V" in args or "version" in args:
        print(f"{TOOL} version {bare(VERSION)}")
    return 0
