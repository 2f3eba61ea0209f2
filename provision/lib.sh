#!/usr/bin/env bash
# Shared helpers of the provision steps (provision/<layer>/NN-*.sh). Sourced, never run.
#
# The build host renders everything (nodeimage.stage); the steps only install it. Each step
# runs as root with NODEIMAGE_STAGE set to the stage directory, which holds:
#   build.env        shell assignments: NODEIMAGE_PROFILE, _STACK, _ARCH, _DISTRO, _IPTABLES,
#                    _KERNEL_ARGS (sourced below)
#   lib.sh           this file
#   <layer>/         the layer's steps/, rootfs/ and lists (see nodeimage/stage.py)
# The OS layer runs in the build VM (packer); the stack and node layers in a chroot of the
# image's file tree on the build host, where nothing is running: see booted().
# DEBUG=1 in the environment (invoke --debug) traces every step.

[[ -n ${NODEIMAGE_LIB_SOURCED:-} ]] && return 0
readonly NODEIMAGE_LIB_SOURCED=1

readonly NODEIMAGE_STAGE="${NODEIMAGE_STAGE:-/var/tmp/nodeimage}"
# Where steps leave marks for later steps: the stage is read-only in the chroot (its artifacts are hard
# links into the build host's download cache). /tmp of the image tree: generalisation empties it.
readonly NODEIMAGE_WORK="${NODEIMAGE_WORK:-/tmp/nodeimage-work}"
# shellcheck disable=SC2034  # used by the steps that source this file
readonly VERIFIED_MARK="${NODEIMAGE_WORK}/stack-verified"
[[ -r ${NODEIMAGE_STAGE}/build.env ]] || {
  printf '[%s] ERROR: %s\n' "${0##*/}" "no build.env in ${NODEIMAGE_STAGE} (is NODEIMAGE_STAGE right?)" >&2
  exit 1
}
# shellcheck source=/dev/null
source "${NODEIMAGE_STAGE}/build.env"
[[ -n ${DEBUG:-} ]] && set -o xtrace

info() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "${0##*/}" "$*" >&2; }
die() {
  printf '[%s] ERROR: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

require_root() {
  [[ ${EUID} -eq 0 ]] || die "must run as root (uid 0), running as uid ${EUID}"
}

# layer_dir LAYER — the stage directory of a layer (os, stack, node).
layer_dir() { printf '%s/%s\n' "${NODEIMAGE_STAGE}" "$1"; }

# read_list FILE — the lines of a list file without comments and blank lines.
read_list() {
  [[ -r $1 ]] || die "list not found: $1"
  sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$1"
}

# True when the step runs on a booted system managed by systemd (the build VM), false in a
# chroot of the image tree, where only persisted configuration can take effect.
booted() { [[ -d /run/systemd/system ]]; }

# make_tmpdir VAR — a scratch directory removed when the step exits.
NODEIMAGE_TMPDIRS=()
cleanup_tmpdirs() {
  local d
  for d in "${NODEIMAGE_TMPDIRS[@]}"; do rm -rf -- "${d}"; done
}
trap cleanup_tmpdirs EXIT
make_tmpdir() {
  local d
  d="$(mktemp -d "${TMPDIR:-/tmp}/nodeimage.XXXXXX")"
  NODEIMAGE_TMPDIRS+=("${d}")
  printf -v "$1" '%s' "${d}"
}

# install_rootfs LAYER — install the layer's rendered files: rootfs/<path> goes to /<path>,
# root-owned, with the mode that rootfs.tsv ("mode<TAB>path" lines) gives it (the build VM's
# upload does not keep modes). Parent directories are created as needed (0755).
install_rootfs() {
  local dir mode path
  dir="$(layer_dir "$1")"
  [[ -r ${dir}/rootfs.tsv ]] || die "no rootfs.tsv in ${dir}"
  while IFS=$'\t' read -r mode path; do
    [[ -f ${dir}/rootfs${path} ]] || die "rootfs.tsv names ${path}, which is not in ${dir}/rootfs"
    install -D -o root -g root -m "${mode}" "${dir}/rootfs${path}" "${path}"
    info "installed ${path} (${mode})"
  done < <(read_list "${dir}/rootfs.tsv")
}

# apt_get ARGS... — apt-get that waits for the dpkg lock (cloud-init or apt timers may hold
# it right after boot) and retries transient failures.
apt_get() {
  local attempt
  for attempt in 1 2 3 4 5; do
    if apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 "$@"; then
      return 0
    fi
    warn "apt-get $* failed (attempt ${attempt}/5); retrying in 10s"
    sleep 10
  done
  die "apt-get $* failed 5 times"
}

# systemctl wrappers that work in a booted build and in a chroot (where systemctl edits
# symlinks offline and cannot start or stop anything).
unit_exists() { [[ -n "$(systemctl list-unit-files --no-legend "$1" 2>/dev/null)" ]]; }
stop_unit() {
  if booted; then systemctl stop "$@" || true; fi
}
