#!/usr/bin/env bash
# Installs the Debian bookworm packages nv2pt needs to build, test and run QEMU 7.2 against the model.
# Idempotent: skips apt entirely when everything is already there.
set -euo pipefail
pkgs=(
  build-essential cmake g++
  libfdt-dev device-tree-compiler
  libcli11-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  qemu-system-ppc
  clang-14 libclang-rt-14-dev
  jq strace util-linux python3
  cpio
  gcc-powerpc64le-linux-gnu linux-kbuild-6.1
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  # A failed index (a mirror mid-sync, another architecture's) must not stop us: the install below says what is
  # really missing.
  $sudo_cmd apt-get update -qq || echo "setup: apt-get update reported errors; installing anyway"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The real ppc64le guest kernel and busybox that the e2e guest tests boot (Debian's registry), and the guest module
# that makes the guest kernel create its 64-bit DMA window, built against that kernel's headers.
bash "$(dirname "$0")/fetch-guest.sh"
bash "$(dirname "$0")/build-guest-module.sh"
