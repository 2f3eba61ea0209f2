#!/usr/bin/env bash
# 70: bake what first boot needs without the internet into /usr/local/share/nodeimage:
#   weave-net.yaml  the pinned Weave Net manifest (first boot sets IPALLOC_RANGE and applies it)
#   build.json      what this image was built from
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

main() {
  require_root
  require_verified
  local manifest
  manifest="$(component_file weave-manifest)"
  python3 - "${manifest}" <<'PY' || die "${manifest##*/} is not the Weave manifest (a kind: List with the weave-net DaemonSet)"
import sys
text = open(sys.argv[1]).read()
if "kind: List" not in text or "name: weave-net" not in text or "kind: DaemonSet" not in text:
    sys.exit(1)
PY
  install_conf "${manifest}" "${NODEIMAGE_SHARE}/weave-net.yaml"
  install_conf "${BUILD_JSON}" "${NODEIMAGE_SHARE}/build.json"
}

main "$@"
