#!/usr/bin/env bash
# Packs the guest's initramfs: a static ppc64el busybox and scripts/guest/init as /init (newc cpio, gzip).
# usage: scripts/make-initramfs.sh BUSYBOX OUT.cpio.gz
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUSYBOX OUT.cpio.gz" >&2; exit 2; }
busybox=$1 out=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev"
install -m 755 "$busybox" "$root/bin/busybox"
install -m 755 "$(dirname "$0")/guest/init" "$root/init"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$out"
