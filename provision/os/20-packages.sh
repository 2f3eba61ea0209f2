#!/usr/bin/env bash
# os/20: install the distribution packages every node needs (the list is os/packages.txt:
# the distribution's node packages and the stack's), without recommends, waiting for the
# apt lock if the build VM's own first boot still holds it.
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

main() {
  require_root
  local -a packages
  mapfile -t packages < <(read_list "$(layer_dir os)/packages.txt")
  ((${#packages[@]} > 0)) || die "package list $(layer_dir os)/packages.txt is empty"
  export DEBIAN_FRONTEND=noninteractive
  if booted && command -v cloud-init >/dev/null; then
    info "waiting for cloud-init to finish"
    cloud-init status --wait >/dev/null || warn "cloud-init finished with errors (see cloud-init status --long)"
  fi
  apt_get update
  apt_get install -y --no-install-recommends "${packages[@]}"
  info "installed: ${packages[*]}"
}

main "$@"
