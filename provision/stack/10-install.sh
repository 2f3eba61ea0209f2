#!/usr/bin/env bash
# stack/10: install the stack's programs from the verified artifacts, as install.tsv says:
#   file  ARCHIVE MEMBER DEST MODE   one archive member (MEMBER "-": the artifact itself)
#   tree  ARCHIVE DIR    DEST        an archive directory ("." : all of it) replaces DEST
#   link  ARCHIVE TARGET DEST        DEST becomes a symlink to TARGET
# The build host decided every line from the stack's knowledge of each archive's layout.
set -o errexit -o nounset -o pipefail
# shellcheck source-path=SCRIPTDIR/.. source=lib.sh
source "${NODEIMAGE_STAGE:-/var/tmp/nodeimage}/lib.sh"

install_file() {
  local archive=$1 member=$2 dest=$3 mode=$4 tmp
  if [[ ${member} == - ]]; then
    install -D -o root -g root -m "${mode}" "${archive}" "${dest}"
    return
  fi
  make_tmpdir tmp
  tar -xf "${archive}" -C "${tmp}" --no-same-owner "${member}" || die "${archive##*/} has no member ${member}"
  install -D -o root -g root -m "${mode}" "${tmp}/${member}" "${dest}"
}

install_tree() {
  local archive=$1 member=$2 dest=$3 tmp src
  make_tmpdir tmp
  if [[ ${member} == . ]]; then
    tar -xf "${archive}" -C "${tmp}" --no-same-owner
    src="${tmp}"
  else
    tar -xf "${archive}" -C "${tmp}" --no-same-owner "${member}" || die "${archive##*/} has no directory ${member}"
    src="${tmp}/${member}"
  fi
  [[ -d ${src} ]] || die "${archive##*/}: ${member} is not a directory"
  chown -R root:root "${src}"
  # Unpacked aside first, so a bad archive leaves the old tree in place.
  rm -rf "${dest}"
  install -d -m 0755 "$(dirname "${dest}")"
  mv "${src}" "${dest}"
  chmod 0755 "${dest}"
}

main() {
  require_root
  local dir kind archive member dest mode count=0
  dir="$(layer_dir stack)"
  [[ -f ${VERIFIED_MARK} ]] || die "artifacts not verified (${VERIFIED_MARK} missing): stack/00-verify.sh runs first"
  while IFS=$'\t' read -r kind archive member dest mode; do
    case "${kind}" in
      file) install_file "${dir}/${archive}" "${member}" "${dest}" "${mode}" ;;
      tree) install_tree "${dir}/${archive}" "${member}" "${dest}" ;;
      link) ln -sfn "${member}" "${dest}" ;;
      *) die "install.tsv: unknown kind ${kind}" ;;
    esac
    info "${kind} ${archive##*/}:${member} -> ${dest}"
    count=$((count + 1))
  done < <(read_list "${dir}/install.tsv")
  info "${count} installs done"
}

main "$@"
