#!/usr/bin/env bash
# stack/00: verify every staged artifact against the digest pinned in the lock file
# (checksums.sha256 / checksums.sha512, read by sha256sum/sha512sum --check) BEFORE anything
# is installed. A mismatch names the file and stops the build; nothing is installed.
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

main() {
  require_root
  local dir list algorithm checked=0
  dir="$(layer_dir stack)"
  cd "${dir}"
  rm -f "${VERIFIED_MARK}"
  for list in checksums.*; do
    [[ -f ${list} ]] || continue
    algorithm="${list#checksums.}"
    case "${algorithm}" in sha256 | sha512) ;; *) die "unknown checksum list ${list}" ;; esac
    if ! "${algorithm}sum" --check --strict --quiet "${list}" >&2; then
      die "artifacts do not match their ${algorithm} digests in the lock (above); nothing was installed"
    fi
    checked=$((checked + $(read_list "${list}" | wc -l)))
  done
  ((checked > 0)) || die "no checksum lists in ${dir}: nothing to verify"
  info "${checked} artifacts match the lock"
  install -d -m 0700 "${NODEIMAGE_WORK}"
  : >"${VERIFIED_MARK}"
}

main "$@"
