#!/usr/bin/env bash
# 35: install crictl (kubeadm preflight requires it with a CRI runtime) and point it at CRI-O.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

main() {
  require_root
  require_verified
  local archive tmp
  archive="$(component_file crictl)"
  make_tmpdir tmp
  tar -xzf "${archive}" -C "${tmp}" --no-same-owner crictl || die "${archive} has no 'crictl' entry"
  install_bin "${tmp}/crictl" /usr/local/bin/crictl
  install_conf "${STAGE_FILES}/crictl.yaml" /etc/crictl.yaml
}

main "$@"
