#!/usr/bin/env bash
# Cross-builds the guest's nv2pt_dma module (scripts/guest/nv2pt_dma) for the guest kernel fetch-guest.sh fetched:
# Debian's ppc64el headers of that same kernel ABI (downloaded and unpacked, not installed), the amd64
# linux-kbuild of the same version and gcc-powerpc64le-linux-gnu (both installed by setup.sh). Idempotent: rebuilds
# only when the source is newer than the module.
#
# usage: scripts/build-guest-module.sh [DIR]   (default: $NV2PT_GUEST_DIR, else ~/.cache/nv2pt/guest)
# Leaves DIR/nv2pt_dma.ko; needs DIR/abi (the kernel ABI, written by fetch-guest.sh).
set -euo pipefail
DIR=${1:-${NV2PT_GUEST_DIR:-$HOME/.cache/nv2pt/guest}}
src=$(cd "$(dirname "$0")/guest/nv2pt_dma" && pwd)
ko=$DIR/nv2pt_dma.ko
if [ -s "$ko" ] && [ -z "$(find "$src" -newer "$ko" -type f)" ]; then exit 0; fi
[ -s "$DIR/abi" ] || { echo "build-guest-module: no $DIR/abi (run scripts/fetch-guest.sh)" >&2; exit 1; }
abi=$(cat "$DIR/abi")  # e.g. 6.1.0-57-powerpc64le
hdr=$DIR/headers
if [ ! -d "$hdr/usr/src/linux-headers-$abi" ]; then
  common=linux-headers-${abi%-powerpc64le}-common
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "build-guest-module: downloading linux-headers-$abi:ppc64el and $common"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "linux-headers-$abi:ppc64el" "$common")
  rm -rf "$hdr.tmp"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$hdr.tmp"; done
  # The headers point at the installed locations: the common tree by an absolute include, kbuild's scripts and
  # tools by a relative link into /usr/lib. Point both at the unpacked tree and the installed amd64 kbuild.
  sed -i "s|^include /usr/src/|include $hdr/usr/src/|" "$hdr.tmp/usr/src/linux-headers-$abi/Makefile"
  kbuild=$(readlink "$hdr.tmp/usr/src/linux-headers-$abi/scripts")  # ../../lib/linux-kbuild-6.1/scripts
  kbuild=${kbuild%/scripts}
  kbuild=/usr/lib/${kbuild##*/}
  [ -d "$kbuild/scripts" ] || { echo "build-guest-module: $kbuild missing (setup.sh installs ${kbuild##*/})" >&2; exit 1; }
  mkdir -p "$hdr.tmp/usr/lib"
  ln -sfn "$kbuild" "$hdr.tmp/usr/lib/${kbuild##*/}"
  rm -rf "$hdr"
  mv "$hdr.tmp" "$hdr"
fi
build=$(mktemp -d)
trap 'rm -rf "$build" ${tmp:+"$tmp"}' EXIT
cp "$src"/* "$build"/
make -s -C "$hdr/usr/src/linux-headers-$abi" M="$build" ARCH=powerpc CROSS_COMPILE=powerpc64le-linux-gnu- modules
powerpc64le-linux-gnu-strip --strip-debug -o "$ko.tmp" "$build/nv2pt_dma.ko"
mv "$ko.tmp" "$ko"
echo "build-guest-module: $ko (for $abi)"
