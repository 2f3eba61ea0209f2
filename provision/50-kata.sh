#!/usr/bin/env bash
# 50: install the Kata Containers static bundle under /opt/kata (replacing any previous one)
# and link kata-runtime into /usr/local/bin, where crio.conf's kata-runtime handler points.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly KATA_DIR=/opt/kata

main() {
  require_root
  require_verified
  local archive tmp
  archive="$(component_file kata-static)"
  make_tmpdir tmp
  # Only ./opt/kata from the bundle, unpacked aside first so a bad archive leaves /opt alone.
  tar -xJf "${archive}" -C "${tmp}" --no-same-owner ./opt/kata \
    || die "${archive##*/} has no ./opt/kata tree; expected the kata-static bundle layout"
  [[ -x ${tmp}${KATA_DIR}/bin/kata-runtime ]] || die "${archive##*/} has no ./opt/kata/bin/kata-runtime"
  chown -R root:root "${tmp}${KATA_DIR}"
  rm -rf "${KATA_DIR}"
  install -d -m 0755 /opt
  mv "${tmp}${KATA_DIR}" "${KATA_DIR}"
  ln -sfn "${KATA_DIR}/bin/kata-runtime" /usr/local/bin/kata-runtime
  info "Kata $(component_version kata-static) installed in ${KATA_DIR}"
}

main "$@"
