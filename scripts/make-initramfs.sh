#!/usr/bin/env bash
# Packs the guest's initramfs: a static ppc64el busybox, scripts/guest/init as /init and, if given and present,
# the nv2pt_dma module (scripts/build-guest-module.sh) as /lib/modules/nv2pt_dma.ko (newc cpio, gzip).
# usage: scripts/make-initramfs.sh BUSYBOX OUT.cpio.gz [MODULE.ko]
set -euo pipefail
[ $# -eq 2 ] || [ $# -eq 3 ] || { echo "usage: $0 BUSYBOX OUT.cpio.gz [MODULE.ko]" >&2; exit 2; }
busybox=$1 out=$2 module=${3:-}
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev"
install -m 755 "$busybox" "$root/bin/busybox"
install -m 755 "$(dirname "$0")/guest/init" "$root/init"
if [ -n "$module" ] && [ -s "$module" ]; then
  mkdir -p "$root/lib/modules"
  install -m 644 "$module" "$root/lib/modules/nv2pt_dma.ko"
fi
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$out"
