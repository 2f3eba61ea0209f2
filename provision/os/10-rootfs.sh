#!/usr/bin/env bash
# os/10: install the OS layer's rendered files: kernel modules and sysctls the stack needs at
# boot, apt's periodic runs off, the stack's kernel arguments for update-grub.
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

main() {
  require_root
  install_rootfs os
}

main "$@"
