#!/usr/bin/env bash
# 60: install kubelet, kubeadm and kubectl from the Kubernetes node tarball into
# /usr/local/bin, the kubelet unit with the kubeadm and CRI-O drop-ins, and enable kubelet
# (it starts once kubeadm has written /var/lib/kubelet/config.yaml).
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly BINARIES=(kubelet kubeadm kubectl)
readonly UNIT=/etc/systemd/system/kubelet.service
readonly DROPINS=/etc/systemd/system/kubelet.service.d

main() {
  require_root
  require_verified
  local archive tmp bin
  archive="$(component_file kubernetes-node)"
  make_tmpdir tmp
  tar -xzf "${archive}" -C "${tmp}" --no-same-owner "${BINARIES[@]/#/kubernetes/node/bin/}" \
    || die "${archive##*/} lacks kubernetes/node/bin/{${BINARIES[*]}}"
  for bin in "${BINARIES[@]}"; do
    install_bin "${tmp}/kubernetes/node/bin/${bin}" "/usr/local/bin/${bin}"
  done
  install_conf "${STAGE_FILES}/kubelet/kubelet.service" "${UNIT}"
  install_conf "${STAGE_FILES}/kubelet/10-kubeadm.conf" "${DROPINS}/10-kubeadm.conf"
  install_conf "${STAGE_FILES}/kubelet/20-crio.conf" "${DROPINS}/20-crio.conf"
  install -d -o root -g root -m 0755 /var/lib/kubelet /etc/kubernetes/manifests
  if booted; then systemctl daemon-reload; fi
  enable_unit kubelet.service
  info "Kubernetes $(component_version kubernetes-node): ${BINARIES[*]} in /usr/local/bin"
}

main "$@"
