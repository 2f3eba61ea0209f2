#!/usr/bin/env bash
# 20: kernel prerequisites of kubeadm and CRI-O: load overlay and br_netfilter at boot,
# bridge-nf-call-iptables/ip6tables and ip_forward on, swap off for good, and iptables on
# the legacy backend (kube-proxy 1.17 writes legacy rules).
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly MODULES_FILE=/etc/modules-load.d/nodeimage-k8s.conf
readonly SYSCTL_FILE=/etc/sysctl.d/90-nodeimage-k8s.conf

# Comment out swap entries in fstab and delete the swap files they named.
disable_swap() {
  local swapfiles
  swapfiles="$(awk '$1 !~ /^#/ && $3 == "swap" && $1 ~ /^\// {print $1}' /etc/fstab 2>/dev/null || true)"
  if [[ -f /etc/fstab ]]; then
    sed -i -E 's|^([^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$|# nodeimage: swap off for kubelet # \1|' /etc/fstab
  fi
  if booted; then swapoff -a || warn "swapoff -a failed"; fi
  local f
  for f in ${swapfiles} /swap.img /swapfile; do
    if [[ -f ${f} ]]; then
      info "removing swap file ${f}"
      rm -f -- "${f}"
    fi
  done
}

use_legacy_iptables() {
  local tool
  for tool in iptables ip6tables arptables ebtables; do
    if [[ -x /usr/sbin/${tool}-legacy ]] && update-alternatives --query "${tool}" >/dev/null 2>&1; then
      update-alternatives --set "${tool}" "/usr/sbin/${tool}-legacy" >/dev/null
    fi
  done
}

main() {
  require_root
  require_verified
  install_conf "${STAGE_FILES}/modules-load.d/nodeimage-k8s.conf" "${MODULES_FILE}"
  install_conf "${STAGE_FILES}/sysctl.d/90-nodeimage-k8s.conf" "${SYSCTL_FILE}"
  disable_swap
  use_legacy_iptables
  if booted; then
    modprobe overlay
    modprobe br_netfilter
    sysctl --quiet --load "${SYSCTL_FILE}"
  else
    info "not booted (chroot build): modules and sysctls take effect on first boot"
  fi
}

main "$@"
