#!/usr/bin/env bash
# Figure 7: the real guest's first touch of 256 MiB of GPU RAM against 256 MiB of its own RAM in the same boot, and
# the time of its whole 64-bit DMA window set-up. One boot of Debian's ppc64le kernel under QEMU 7.2 (TCG) with GPU
# 0004:04:00.0 and its bridges (scripts/guest/init with nv2pt.bench): the nv2pt_dma module memsets 256 MiB of fresh
# guest RAM (vmalloc), then 256 MiB of GPU RAM onlined just before (16 blocks never touched: every 64 KiB page is a
# first touch on the host, served by the kernel's own fault path once the links are trained), then guest RAM again; and it times
# dma_set_mask_and_coherent(64), i.e. the guest's RTAS calls, QEMU's TCE_CREATE and the mapping of all 1 GiB of
# guest RAM (64 guest TCEs of 16 MiB, 16384 host TCEs). No timing is asserted anywhere.
#
# usage: bench/guest_ddw_first_touch.sh [--nv2pt build/bin/nv2pt] [--out DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nv2pt=$root/build/bin/nv2pt
out=$(mktemp -d)
while [ $# -gt 0 ]; do
  case $1 in
    --nv2pt) nv2pt=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--nv2pt NV2PT] [--out DIR]" >&2; exit 2 ;;
  esac
done
guest=${NV2PT_GUEST_DIR:-$HOME/.cache/nv2pt/guest}
[ -s "$guest/nv2pt_dma.ko" ] || { echo "no $guest/nv2pt_dma.ko: run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$out"
bash "$root/scripts/make-initramfs.sh" "$guest/busybox" "$out/initramfs.cpio.gz" "$guest/nv2pt_dma.ko"
NV2PT_PAGE_SIZE=host NV2PT_RUNTIME_DIR=$out/run "$nv2pt" run --report "$out/report.json" --log "$out/events.log" -- \
  qemu-system-ppc64 -M pseries,accel=tcg -cpu POWER9 -m 1G -nographic -nodefaults -serial mon:stdio \
  -kernel "$guest/vmlinux" -initrd "$out/initramfs.cpio.gz" -append "console=hvc0 quiet nv2pt.bench" \
  -device vfio-pci,host=0004:04:00.0,bus=pci.0,addr=1.0 -device vfio-pci,host=0006:00:00.0,bus=pci.0,addr=2.0 \
  -device vfio-pci,host=0006:00:00.1,bus=pci.0,addr=3.0 </dev/null >"$out/console.txt" 2>&1
says() { tr -d '\r' <"$out/console.txt" | sed -n "s/^.*GUEST: $1 *//p"; }
mapfile -t touches < <(says 'bench touch')
[ ${#touches[@]} -eq 3 ] || { echo "the guest printed no touch times (see $out/console.txt)" >&2; exit 1; }
ns() { awk '{print $3}' <<<"$1"; }
ram1=$(ns "${touches[0]}") gpu=$(ns "${touches[1]}") ram2=$(ns "${touches[2]}")
ram=$(((ram1 < ram2) ? ram1 : ram2))
setup=$(says ddw-setup-ns | head -n 1 | awk '{print $2}')
# Host side: QEMU's TCE_CREATE of the 64-bit window, then its 16 MiB MAP_DMAs of guest RAM (the model's share).
host=$(awk '/TCE_CREATE.*start_addr=0x800000000000000\} = 0/ && !c {c = $1}
            c && /VFIO_IOMMU_MAP_DMA\{.*iova=0x8000000.*size=0x1000000/ {if (!first) first = $1; last = $1; n++}
            END {if (c && n) printf "%d MAP_DMAs of 16 MiB (%d TCEs of 64 KiB) in %.2f ms, the first %.1f ms after TCE_CREATE",
                 n, n * 256, (last - first) * 1000, (first - c) * 1000}' "$out/events.log")
awk -v r1="$ram1" -v r2="$ram2" -v g="$gpu" -v r="$ram" -v s="$setup" -v h="$host" 'BEGIN {
  printf "guest RAM first touch, 256 MiB:  %.1f ms, again after GPU RAM %.1f ms (%.0f MiB/s at best)\n", r1/1e6, r2/1e6, 256e9/r
  printf "GPU RAM first touch, 256 MiB:    %.1f ms (%.0f MiB/s, %.0f pages of 64 KiB/s)\n", g/1e6, 256e9/g, 4096e9/g
  printf "GPU RAM / guest RAM:             %.2fx (goal: within 1.1x)\n", g/r
  printf "guest DDW set-up (dma_set_mask_and_coherent): %.1f ms\n", s/1e6
  printf "  on the host: %s\n", h
}'
echo "(console, report and event log in $out)"
