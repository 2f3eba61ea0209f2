#!/usr/bin/env bash
# 85: write /etc/nodeimage-release, KEY=value lines saying what the image is: profile,
# nodeimage version, base distro/release, every component version and the lock digest.
# Nothing time- or host-specific, so two builds of the same inputs write the same file.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly RELEASE_FILE=/etc/nodeimage-release

main() {
  require_root
  local tmp
  make_tmpdir tmp
  python3 - "${BUILD_JSON}" >"${tmp}/release" <<'PY'
import json, re, sys
b = json.load(open(sys.argv[1]))
lines = [
    ("NODEIMAGE_VERSION", b["nodeimage_version"]),
    ("PROFILE", b["profile"]),
    ("ARCH", b["arch"]),
    ("BASE_DISTRO", b["base"]["distro"]),
    ("BASE_RELEASE", b["base"]["release"]),
    ("KUBERNETES_VERSION", b["kubernetes"]["version"]),
]
for name, c in sorted(b["components"].items()):
    lines.append((re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_VERSION", c["version"]))
lines.append(("LOCK_SHA256", b["lock_sha256"]))
for key, value in lines:
    value = str(value)
    if not re.fullmatch(r"[A-Za-z0-9._:+/-]+", value):
        sys.exit(f"build.json value for {key} is not a plain token: {value!r}")
    print(f"{key}={value}")
PY
  install_conf "${tmp}/release" "${RELEASE_FILE}"
  info "$(tr '\n' ' ' <"${RELEASE_FILE}")"
}

main "$@"
