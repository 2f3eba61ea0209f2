#!/usr/bin/env bash
# Install the Debian packages listed in deps/apt-packages.txt that are missing.
# Does nothing when all are installed; needs root (or sudo) otherwise.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -o xtrace

readonly LIST="${1:-$(dirname "$0")/apt-packages.txt}"

main() {
  local -a wanted missing=()
  mapfile -t wanted < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "${LIST}")
  local pkg
  for pkg in "${wanted[@]}"; do
    if ! dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("${pkg}")
    fi
  done
  if ((${#missing[@]} == 0)); then
    echo "deps: all ${#wanted[@]} Debian packages from ${LIST} are installed"
    return 0
  fi
  echo "deps: installing ${#missing[@]} missing Debian packages: ${missing[*]}"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null || { echo "deps: need root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

main "$@"
