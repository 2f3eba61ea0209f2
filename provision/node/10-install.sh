#!/usr/bin/env bash
# node/10: install the first-boot program /usr/local/sbin/nodeimage-bootstrap and its unit,
# what it needs without the internet (the CNI manifest, the RuntimeClass, the build record)
# under /usr/local/share/nodeimage, and /etc/nodeimage-release; enable the unit (it runs
# only on nodes booted with a nodeimage seed). Generalisation follows, on the build host
# (nodeimage.generalise, from provision/files/generalise.list).
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

main() {
  require_root
  local unit
  install_rootfs node
  while read -r unit; do
    systemctl enable "${unit}"
    info "enabled ${unit}"
  done < <(read_list "$(layer_dir node)/units.txt")
  info "$(tr '\n' ' ' </etc/nodeimage-release)"
}

main "$@"
