#!/usr/bin/env bash
# stack/20: install the stack's rendered configuration (CRI-O, kubelet unit and drop-ins,
# crictl, modules Kata needs), create the directories its programs need, enable its units.
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

main() {
  require_root
  local dir d unit
  dir="$(layer_dir stack)"
  install_rootfs stack
  while read -r d; do install -d -o root -g root -m 0755 "${d}"; done < <(read_list "${dir}/directories.txt")
  if booted; then systemctl daemon-reload; fi
  while read -r unit; do
    systemctl enable "${unit}"
    info "enabled ${unit}"
  done < <(read_list "${dir}/units.txt")
}

main "$@"
