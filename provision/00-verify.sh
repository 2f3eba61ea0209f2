#!/usr/bin/env bash
# 00: verify every staged artifact against the digest pinned in build.json (from the lock
# file) BEFORE anything is installed. A mismatch names the artifact, the expected and the
# actual digest, and stops the build; on success it leaves the mark later steps require.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

# One "name<TAB>file<TAB>algorithm<TAB>hex" line per component of build.json.
list_components() {
  python3 - "${BUILD_JSON}" <<'PY'
import json, sys
build = json.load(open(sys.argv[1]))
components = build.get("components") or {}
if not components:
    sys.exit("build.json lists no components")
for name, c in sorted(components.items()):
    checksum = c.get("checksum") or ""
    algorithm, _, digest = checksum.partition(":")
    if algorithm not in ("sha256", "sha512") or not digest:
        sys.exit(f"component {name}: checksum {checksum!r} is not 'sha256:<hex>' or 'sha512:<hex>'; "
                 "record the digest in artifacts.lock.yaml (invoke lock)")
    if not c.get("file"):
        sys.exit(f"component {name}: no 'file' in build.json")
    print(f"{name}\t{c['file']}\t{algorithm}\t{digest.lower()}")
PY
}

main() {
  require_root
  rm -f "${VERIFIED_MARK}"
  local listing name file algorithm expected actual failures=0 verified=""
  listing="$(list_components)" || die "cannot read the components of ${BUILD_JSON}"
  while IFS=$'\t' read -r name file algorithm expected; do
    local path="${NODEIMAGE_STAGE}/${file}"
    if [[ ! -f ${path} ]]; then
      printf 'artifact %s: file %s is missing from the stage\n' "${name}" "${path}" >&2
      failures=$((failures + 1))
      continue
    fi
    actual="$("${algorithm}sum" "${path}" | cut -d' ' -f1)"
    if [[ ${actual} != "${expected}" ]]; then
      printf 'artifact %s (%s): checksum mismatch\n  expected %s:%s\n  actual   %s:%s\n' \
        "${name}" "${file}" "${algorithm}" "${expected}" "${algorithm}" "${actual}" >&2
      failures=$((failures + 1))
      continue
    fi
    info "ok ${name} ${algorithm}:${actual}"
    verified+="${algorithm}:${actual}  ${file}"$'\n'
  done <<<"${listing}"
  ((failures == 0)) || die "${failures} artifact(s) failed verification; nothing was installed"
  printf '%s' "${verified}" >"${VERIFIED_MARK}"
}

main "$@"
