#!/usr/bin/env bash
# Fetches the real ppc64le guest that e2e.guest_boot boots under QEMU: Debian bookworm's ppc64el kernel (an ELF that
# QEMU takes as -kernel) and a static busybox (the guest's whole userland), from Debian's registry. Idempotent.
#
# usage: scripts/fetch-guest.sh [DIR]   (default: $NV2PT_GUEST_DIR, else ~/.cache/nv2pt/guest)
# Leaves DIR/vmlinux and DIR/busybox. Adds the ppc64el architecture to dpkg (root or sudo) to reach the packages;
# installs nothing of it.
set -euo pipefail
DIR=${1:-${NV2PT_GUEST_DIR:-$HOME/.cache/nv2pt/guest}}
[ -s "$DIR/vmlinux" ] && [ -s "$DIR/busybox" ] && exit 0

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if ! dpkg --print-foreign-architectures | grep -qx ppc64el; then
  echo "fetch-guest: adding the ppc64el architecture to dpkg"
  $sudo_cmd dpkg --add-architecture ppc64el
fi
if ! apt-cache show linux-image-powerpc64le:ppc64el >/dev/null 2>&1; then
  # An index of another architecture failing to download is not ours to fail on; a missing package below is.
  $sudo_cmd apt-get update -qq || true
fi
# The metapackage names the current kernel ABI.
image=$(apt-cache depends linux-image-powerpc64le:ppc64el 2>/dev/null |
  awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$image" ] || { echo "fetch-guest: no ppc64el kernel package in the apt indexes" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-guest: downloading $image and busybox-static:ppc64el"
(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$image" busybox-static:ppc64el)
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
mkdir -p "$DIR"
cp "$(ls "$tmp"/root/boot/vmlinux-* | head -n 1)" "$DIR/vmlinux.tmp"
cp "$tmp/root/bin/busybox" "$DIR/busybox.tmp"
mv "$DIR/vmlinux.tmp" "$DIR/vmlinux"
mv "$DIR/busybox.tmp" "$DIR/busybox"
echo "fetch-guest: $DIR/vmlinux ($image), $DIR/busybox"
