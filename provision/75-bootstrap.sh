#!/usr/bin/env bash
# 75: install the first-boot program /usr/local/sbin/nodeimage-bootstrap (cloud-init's runcmd
# runs it with the node's role) and give it the baked Weave manifest as JSON, so that at
# first boot a standard-library python3 can set IPALLOC_RANGE and `kubectl apply -f -` it.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly PROGRAM=/usr/local/sbin/nodeimage-bootstrap
readonly WEAVE_YAML="${NODEIMAGE_SHARE}/weave-net.yaml"
readonly WEAVE_JSON="${NODEIMAGE_SHARE}/weave-net.json"

# weave_json YAML JSON — the manifest as JSON; PyYAML is there because cloud-init depends on it.
weave_json() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
try:
    import yaml
except ImportError:
    sys.exit("python3-yaml is missing (cloud-init needs it too): cannot convert the Weave manifest")
src, dest = sys.argv[1], sys.argv[2]
with open(src) as fh:
    manifest = yaml.safe_load(fh)
items = manifest.get("items", []) if isinstance(manifest, dict) else []
if manifest.get("kind") != "List" or not any(
    i.get("kind") == "DaemonSet"
    and i.get("metadata", {}).get("name") == "weave-net"
    and any(c.get("name") == "weave" for c in i["spec"]["template"]["spec"]["containers"])
    for i in items
):
    sys.exit(f"{src}: not a kind: List with DaemonSet weave-net and a container 'weave'")
tmp = dest + ".tmp"
with open(tmp, "w") as fh:
    json.dump(manifest, fh, indent=1, sort_keys=True)
    fh.write("\n")
os.chmod(tmp, 0o644)
os.replace(tmp, dest)
PY
}

main() {
  require_root
  local src="${STAGE_FILES}/nodeimage-bootstrap"
  [[ -r ${src} ]] || die "${src} not found: packer uploads provision/files/ to ${STAGE_FILES}"
  python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "${src}" \
    || die "${src} is not valid Python for this image's python3 ($(python3 --version 2>&1))"
  install_bin "${src}" "${PROGRAM}"
  [[ -r ${WEAVE_YAML} ]] || die "${WEAVE_YAML} not found: 70-bake.sh bakes it and must run before this step"
  weave_json "${WEAVE_YAML}" "${WEAVE_JSON}" || die "could not convert ${WEAVE_YAML} to ${WEAVE_JSON}"
  info "installed ${PROGRAM}; Weave manifest for first boot: ${WEAVE_JSON}"
}

main "$@"
