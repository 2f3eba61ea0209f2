#!/usr/bin/env bash
# 99: generalise the image: remove everything that belongs to the build machine rather than
# to the image (cloud-init state, machine-id, SSH host keys, apt lists and caches, logs,
# temporary files, shell history, the stage directory), then zero free space so the disk
# image compacts. The logged-in build user stays: packer's shutdown command removes it.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly ZERO_FILE=/var/tmp/nodeimage-zero

clean_cloud_init() {
  if command -v cloud-init >/dev/null; then
    # --seed is missing on some old releases; fall back to what they do have.
    cloud-init clean --logs --seed 2>/dev/null || cloud-init clean --logs || warn "cloud-init clean failed"
  fi
  # What `cloud-init clean --seed` removes, also when cloud-init is absent or failed.
  rm -rf /var/lib/cloud/* /var/log/cloud-init.log /var/log/cloud-init-output.log
}

clean_identity() {
  # Empty (not missing): systemd writes a new machine-id on first boot.
  : >/etc/machine-id
  chmod 0444 /etc/machine-id
  if [[ -d /var/lib/dbus ]]; then
    ln -sfn /etc/machine-id /var/lib/dbus/machine-id
  else
    rm -f /var/lib/dbus/machine-id
  fi
  rm -f /etc/ssh/ssh_host_*
  rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
  rm -f /var/lib/dhcp/*.leases /var/lib/dhclient/*.leases
}

clean_apt() {
  if command -v apt-get >/dev/null; then apt-get clean; fi
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
  install -d -m 0755 /var/lib/apt/lists/partial
}

clean_logs() {
  if booted && [[ -d /run/systemd/journal ]]; then
    # For the rest of this boot journald writes to /run only; otherwise it would persist the
    # shutdown's messages under the build's machine-id into /var/log/journal after this step.
    install -d -m 0755 /run/systemd/journald.conf.d
    printf '[Journal]\nStorage=volatile\n' >/run/systemd/journald.conf.d/90-nodeimage-build.conf
    systemctl restart systemd-journald || warn "could not restart journald; the journal may keep build messages"
  fi
  # Nothing else may log to files after this step (Ubuntu's rsyslog would record the shutdown).
  stop_unit rsyslog.service syslog.socket
  rm -rf /var/log/journal/*
  find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' -o -name '*-old' \) -delete
  find /var/log -type f -exec truncate -s 0 {} +
  # Login records are appended only to an existing file (glibc updwtmp does not create it), so
  # packer's shutdown session leaves none; systemd-tmpfiles recreates both on first boot.
  rm -f /var/log/wtmp /var/log/btmp
}

clean_files() {
  rm -rf /tmp/* /tmp/.[!.]* /var/tmp/* /var/tmp/.[!.]*
  rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst /root/.viminfo /root/.wget-hsts
  rm -rf /root/.cache /root/.ansible
}

zero_free_space() {
  if ! booted || [[ -n ${NODEIMAGE_SKIP_ZERO:-} ]]; then
    info "not zeroing free space (not booted, or NODEIMAGE_SKIP_ZERO set)"
    return 0
  fi
  sync
  # With discard passed through to the disk image (qemu discard=unmap), trimming frees the
  # blocks at once; otherwise fill free space with zeros, which qemu-img convert drops.
  if command -v fstrim >/dev/null && fstrim / 2>/dev/null; then
    info "trimmed free space of /"
    return 0
  fi
  info "zeroing free space so the image compacts"
  dd if=/dev/zero of="${ZERO_FILE}" bs=1M status=none 2>/dev/null || true
  rm -f "${ZERO_FILE}"
  sync
}

main() {
  require_root
  clean_cloud_init
  clean_identity
  clean_apt
  clean_logs
  clean_files
  rm -rf "${NODEIMAGE_STAGE}"
  zero_free_space
  info "generalised"
}

main "$@"
