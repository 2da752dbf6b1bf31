#!/usr/bin/env bash
# Installs what hsfs needs on a Debian machine (run as root), skipping what
# is already there. With --bench, what `hsfs-bench mount` needs to build
# libfuse's passthrough_ll example (and git for its git workload); with
# --test, that too (the bench smoke tests run it) and the tools the test
# suites drive.
set -euo pipefail

need_pkgs=()
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
if [[ "${1:-}" == "--test" ]]; then
  command -v stress-ng >/dev/null || need_pkgs+=(stress-ng)
  command -v git >/dev/null || need_pkgs+=(git)
  command -v tar >/dev/null || need_pkgs+=(tar)
fi
if [[ "${1:-}" == "--bench" || "${1:-}" == "--test" ]]; then
  dpkg -s libfuse3-dev >/dev/null 2>&1 || need_pkgs+=(libfuse3-dev)
  command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
  command -v gcc >/dev/null || need_pkgs+=(gcc)
  command -v git >/dev/null || need_pkgs+=(git)
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
  # cargo-fuzz, to build the wire-protocol fuzz target.
  if ! command -v cargo-fuzz >/dev/null && [[ ! -x "$HOME/.cargo/bin/cargo-fuzz" ]]; then
    echo "setup: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked --quiet
  fi
fi
