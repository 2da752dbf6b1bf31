#!/usr/bin/env bash
# Installs what hsfs needs on a Debian machine (run as root), skipping what
# is already there. With --test, also the tools the test suites drive.
set -euo pipefail

need_pkgs=()
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
if [[ "${1:-}" == "--test" ]]; then
  command -v stress-ng >/dev/null || need_pkgs+=(stress-ng)
  command -v git >/dev/null || need_pkgs+=(git)
  command -v tar >/dev/null || need_pkgs+=(tar)
fi
if ((${#need_pkgs[@]})); then
  echo "setup: installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if [[ ! -e /dev/fuse ]]; then
  modprobe fuse 2>/dev/null || true
fi
[[ -e /dev/fuse ]] || { echo "setup: /dev/fuse is missing: this machine cannot mount FUSE filesystems" >&2; exit 1; }

if [[ "${1:-}" == "--test" ]]; then
  # fsx (crates.io), the file system exerciser.
  if ! command -v fsx >/dev/null && [[ ! -x "$HOME/.cargo/bin/fsx" ]]; then
    echo "setup: installing fsx 0.3.2 from crates.io"
    cargo install fsx --version 0.3.2 --locked --quiet
  fi
fi
