#!/usr/bin/env bash
# 30: install the CNI reference plugins (flat tarball) into /opt/cni/bin, where CRI-O looks
# for them and where Weave adds its own plugin on first boot.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly CNI_BIN=/opt/cni/bin

main() {
  require_root
  require_verified
  local archive
  archive="$(component_file cni-plugins)"
  install -d -o root -g root -m 0755 "${CNI_BIN}" /etc/cni/net.d
  tar -xzf "${archive}" -C "${CNI_BIN}" --no-same-owner --no-same-permissions
  chown -R root:root "${CNI_BIN}"
  find "${CNI_BIN}" -type f -exec chmod 0755 {} +
  [[ -x ${CNI_BIN}/portmap ]] || die "${archive} has no portmap plugin (Weave needs it for hostPort)"
  info "CNI plugins: $(find "${CNI_BIN}" -maxdepth 1 -type f -printf '%f ' | sort)"
}

main "$@"
