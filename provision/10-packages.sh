#!/usr/bin/env bash
# 10: install the distro packages kubeadm, CRI-O and the install steps need (the list is
# files/apt-packages.txt), without recommends, waiting for the apt lock if it is held.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly PACKAGE_LIST="${STAGE_FILES}/apt-packages.txt"

main() {
  require_root
  require_verified
  [[ -r ${PACKAGE_LIST} ]] || die "package list not found: ${PACKAGE_LIST}"
  local -a packages
  mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "${PACKAGE_LIST}")
  ((${#packages[@]} > 0)) || die "package list ${PACKAGE_LIST} is empty"
  export DEBIAN_FRONTEND=noninteractive
  if booted && command -v cloud-init >/dev/null; then
    # The build VM's own first boot may still be installing or updating packages.
    info "waiting for cloud-init to finish"
    cloud-init status --wait >/dev/null || warn "cloud-init finished with errors (see cloud-init status --long)"
  fi
  apt_get update
  apt_get install -y --no-install-recommends "${packages[@]}"
  info "installed: ${packages[*]}"
}

main "$@"
