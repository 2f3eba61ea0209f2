#!/usr/bin/env bash
# 40: install CRI-O from the static bundle the way its `make install` does (crio, pinns,
# units in /usr/local/lib/systemd/system, policy.json), add conmon from the lock, write
# /etc/crio/crio.conf from files/crio/crio.conf.in (systemd cgroups, runc default, the
# kata-runtime handler), remove CRI-O's default bridge/loopback CNI configs, enable crio.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly BINDIR=/usr/local/bin
readonly UNITDIR=/usr/local/lib/systemd/system
readonly KATA_RUNTIME=/usr/local/bin/kata-runtime
# ocicni would pick these before Weave's 10-weave.conflist and give early pods bridge addresses.
readonly DEFAULT_CNI_CONFIGS=(100-crio-bridge.conf 200-loopback.conf 10-crio-bridge.conf 99-loopback.conf)

# The bundle's top directory (crio-vX.Y.Z/), found by its bin/pinns rather than assumed.
bundle_root() {
  local dir=$1 pinns
  pinns="$(find "${dir}" -mindepth 3 -maxdepth 3 -path '*/bin/pinns' -print -quit)"
  [[ -n ${pinns} ]] || die "CRI-O bundle has no <top>/bin/pinns; expected crio-vX.Y.Z/bin/{crio-*-static-*,pinns}"
  dirname "$(dirname "${pinns}")"
}

main() {
  require_root
  require_verified
  local archive version machine tmp root runc
  archive="$(component_file cri-o)"
  version="$(component_version cri-o)"
  machine="$(build_machine)"
  make_tmpdir tmp
  tar -xzf "${archive}" -C "${tmp}" --no-same-owner
  root="$(bundle_root "${tmp}")"

  local crio_bin="${root}/bin/crio-${machine}-static-musl"
  [[ -f ${crio_bin} ]] || crio_bin="${root}/bin/crio-${machine}-static-glibc"
  [[ -f ${crio_bin} ]] || die "CRI-O bundle ${archive##*/} has no bin/crio-${machine}-static-{musl,glibc}"
  install_bin "${crio_bin}" "${BINDIR}/${crio_bin##*/}"
  ln -sfn "${crio_bin##*/}" "${BINDIR}/crio"
  install_bin "${root}/bin/pinns" "${BINDIR}/pinns"
  install_bin "$(component_file conmon)" "${BINDIR}/conmon"

  local unit
  for unit in crio.service crio-wipe.service crio-shutdown.service; do
    install_conf "${root}/contrib/${unit}" "${UNITDIR}/${unit}"
  done
  install_conf "${root}/contrib/policy.json" /etc/containers/policy.json
  install_conf "${STAGE_FILES}/crio/registries.conf" /etc/containers/registries.conf
  if [[ -f ${root}/etc/crio-umount.conf ]]; then
    install_conf "${root}/etc/crio-umount.conf" /usr/local/share/oci-umount/oci-umount.d/crio-umount.conf
  fi

  runc="$(command -v runc)" || die "runc not found on PATH; 10-packages.sh installs it (package runc)"
  render "${STAGE_FILES}/crio/crio.conf.in" /etc/crio/crio.conf \
    "CRIO_VERSION=${version}" "CRIO_BARE_VERSION=${version#v}" \
    "RUNC_PATH=${runc}" "KATA_RUNTIME_PATH=${KATA_RUNTIME}"

  install -d -o root -g root -m 0755 /etc/cni/net.d /var/lib/crio
  local conf
  for conf in "${DEFAULT_CNI_CONFIGS[@]}"; do
    rm -f "/etc/cni/net.d/${conf}"
  done

  if booted; then systemctl daemon-reload; fi
  enable_unit crio.service
  info "CRI-O ${version} installed: ${BINDIR}/crio -> ${crio_bin##*/}, runc ${runc}, kata ${KATA_RUNTIME}"
}

main "$@"
