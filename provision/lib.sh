#!/usr/bin/env bash
# Shared helpers for the provision steps (provision/NN-*.sh). Sourced, never run.
#
# Packer uploads this file as $NODEIMAGE_STAGE/lib.sh next to:
#   build.json   what to build: profile, base distro, component versions and files
#   artifacts/   every lock artifact of the profile (file name = basename of its URL)
#   files/       a copy of the repository's provision/files/
# and runs each step as root: `env NODEIMAGE_STAGE=/var/tmp/nodeimage bash NN-step.sh`.

[[ -n ${NODEIMAGE_LIB_SOURCED:-} ]] && return 0
readonly NODEIMAGE_LIB_SOURCED=1

readonly NODEIMAGE_STAGE="${NODEIMAGE_STAGE:-/var/tmp/nodeimage}"
readonly BUILD_JSON="${NODEIMAGE_STAGE}/build.json"
# shellcheck disable=SC2034  # used by the steps that source this file
readonly STAGE_FILES="${NODEIMAGE_STAGE}/files"
# Written by 00-verify.sh once every artifact matched its digest; install steps refuse to run without it.
readonly VERIFIED_MARK="${NODEIMAGE_STAGE}/verified"
# Where the image keeps what first boot needs (the Weave manifest, a copy of build.json).
# shellcheck disable=SC2034
readonly NODEIMAGE_SHARE=/usr/local/share/nodeimage

info() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "${0##*/}" "$*" >&2; }
die() {
  printf '[%s] ERROR: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

require_root() {
  [[ ${EUID} -eq 0 ]] || die "must run as root (uid 0), running as uid ${EUID}; packer runs steps with sudo"
}

# build_get KEY... — print a value of build.json, e.g. `build_get components cri-o version`.
build_get() {
  [[ -r ${BUILD_JSON} ]] || die "build description not found: ${BUILD_JSON} (is NODEIMAGE_STAGE=${NODEIMAGE_STAGE} right?)"
  python3 - "${BUILD_JSON}" "$@" <<'PY'
import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    if not isinstance(value, dict) or key not in value:
        sys.exit(f"build.json has no {'.'.join(sys.argv[2:])!r} (missing {key!r})")
    value = value[key]
print(value if not isinstance(value, (dict, list)) else json.dumps(value))
PY
}

# component_version NAME / component_file NAME — version and staged path of a lock artifact.
component_version() { build_get components "$1" version; }
component_file() {
  local rel
  rel="$(build_get components "$1" file)" || exit 1
  printf '%s/%s\n' "${NODEIMAGE_STAGE}" "${rel}"
}

# uname-style machine name of the image's architecture (x86_64, aarch64).
build_machine() {
  local arch
  arch="$(build_get arch)" || exit 1
  case "${arch}" in
    amd64) echo x86_64 ;;
    arm64) echo aarch64 ;;
    *) die "unsupported arch in build.json: ${arch} (expected amd64 or arm64)" ;;
  esac
}

require_verified() {
  [[ -f ${VERIFIED_MARK} ]] || die "artifacts not verified (${VERIFIED_MARK} missing): run 00-verify.sh first"
}

# True when the step runs on a booted system managed by systemd (a VM build), false in a
# chroot or container build tree, where only persisted configuration can take effect.
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

# install_bin SRC DEST — an executable, root-owned, 0755.
install_bin() { install -D -o root -g root -m 0755 "$1" "$2"; }
# install_conf SRC DEST [MODE] — a configuration file, root-owned, 0644 by default.
install_conf() { install -D -o root -g root -m "${3:-0644}" "$1" "$2"; }

# render TEMPLATE DEST NAME=VALUE... — copy TEMPLATE to DEST replacing each @NAME@ with VALUE.
render() {
  local template=$1 dest=$2
  shift 2
  python3 - "${template}" "${dest}" "$@" <<'PY'
import os, re, sys
template, dest, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
text = open(template).read()
for pair in pairs:
    name, value = pair.split("=", 1)
    text = text.replace(f"@{name}@", value)
left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
if left:
    sys.exit(f"{template}: placeholders without a value: {' '.join(left)}")
os.makedirs(os.path.dirname(dest), exist_ok=True)
tmp = dest + ".tmp"
with open(tmp, "w") as f:
    f.write(text)
os.chmod(tmp, 0o644)
os.replace(tmp, dest)
PY
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
enable_unit() { systemctl enable "$@"; }
stop_unit() {
  if booted; then systemctl stop "$@" || true; fi
}
