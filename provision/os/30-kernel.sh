#!/usr/bin/env bash
# os/30: kernel settings of the stack: swap off for good, the iptables backend kube-proxy
# writes with, and the kernel arguments (the cgroup layout) for update-grub where the
# distribution manages GRUB. nodeimage's own disks (invoke base) get the same arguments
# from the disk writer. Modules and sysctls (os/10) take effect at once when booted.
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly MODULES_FILE=/etc/modules-load.d/nodeimage-k8s.conf
readonly SYSCTL_FILE=/etc/sysctl.d/90-nodeimage-k8s.conf

# Comment out swap entries in fstab and delete the swap files they named.
disable_swap() {
  local swapfiles f
  swapfiles="$(awk '$1 !~ /^#/ && $3 == "swap" && $1 ~ /^\// {print $1}' /etc/fstab 2>/dev/null || true)"
  if [[ -f /etc/fstab ]]; then
    sed -i -E 's|^([^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$|# nodeimage: swap off for kubelet # \1|' /etc/fstab
  fi
  if booted; then swapoff -a || warn "swapoff -a failed"; fi
  for f in ${swapfiles} /swap.img /swapfile; do
    if [[ -f ${f} ]]; then
      info "removing swap file ${f}"
      rm -f -- "${f}"
    fi
  done
}

set_iptables_backend() {
  [[ ${NODEIMAGE_IPTABLES} == legacy ]] || return 0
  local tool
  for tool in iptables ip6tables arptables ebtables; do
    if [[ -x /usr/sbin/${tool}-legacy ]] && update-alternatives --query "${tool}" >/dev/null 2>&1; then
      update-alternatives --set "${tool}" "/usr/sbin/${tool}-legacy" >/dev/null
    fi
  done
  info "iptables: legacy backend"
}

apply_kernel_args() {
  [[ -n ${NODEIMAGE_KERNEL_ARGS} ]] || return 0
  if command -v update-grub >/dev/null && [[ -f /etc/default/grub ]]; then
    update-grub
    info "kernel arguments for the next boot: ${NODEIMAGE_KERNEL_ARGS} (update-grub)"
  else
    info "GRUB is not managed by the distribution here; the disk writer adds ${NODEIMAGE_KERNEL_ARGS}"
  fi
}

main() {
  require_root
  disable_swap
  set_iptables_backend
  apply_kernel_args
  if booted; then
    local module
    while read -r module; do modprobe "${module}"; done < <(read_list "${MODULES_FILE}")
    sysctl --quiet --load "${SYSCTL_FILE}"
  fi
}

main "$@"
