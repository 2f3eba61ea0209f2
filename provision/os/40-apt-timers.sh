#!/usr/bin/env bash
# os/40: turn off apt's daily timers and unattended-upgrades, so a node's first boot never
# waits for (or fights over) the dpkg lock and nothing changes the pinned packages behind
# the image's back.
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

readonly UNITS=(apt-daily.timer apt-daily-upgrade.timer apt-daily.service apt-daily-upgrade.service)

main() {
  require_root
  local unit
  for unit in "${UNITS[@]}"; do
    stop_unit "${unit}"
    if unit_exists "${unit}"; then systemctl disable "${unit}" 2>/dev/null || true; fi
    systemctl mask "${unit}"
  done
  if dpkg-query -W -f='${Status}' unattended-upgrades 2>/dev/null | grep -q 'ok installed'; then
    stop_unit unattended-upgrades.service
    DEBIAN_FRONTEND=noninteractive apt_get purge -y unattended-upgrades
  fi
}

main "$@"
