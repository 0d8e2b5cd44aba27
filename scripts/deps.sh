#!/usr/bin/env bash
# Installs what building and testing basefs needs on Debian: a C compiler for
# cgo, libfuse-dev for the FUSE mount, and fuse for fusermount. Go itself is
# expected at /usr/local/go or on PATH.
set -euo pipefail

need=()
dpkg -s libfuse-dev >/dev/null 2>&1 || need+=(libfuse-dev)
dpkg -s fuse >/dev/null 2>&1 || need+=(fuse)
dpkg -s pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s bash-completion >/dev/null 2>&1 || need+=(bash-completion)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
