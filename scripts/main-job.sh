#!/usr/bin/env bash
# The main job. On a fresh Debian bookworm machine: install the packages, build nv2pt, run Debian's unmodified
# QEMU 7.2 (qemu-system-ppc64, TCG) against the emulated POWER9 Witherspoon host with the embedded default
# topology, passing through V100 0004:04:00.0 and its two NVLink2 bridges 0006:00:00.0/.1 on the default PHB, and
# show what the guest gets: the device tree QEMU built for it, then a real ppc64le Linux guest (Debian's kernel and
# busybox, scripts/fetch-guest.sh) booted with the same devices, which trains the NVLinks, sets a 64-bit DMA mask on
# the GPU (the nv2pt_dma module) so that its own kernel creates the 64-bit DMA window, and onlines GPU RAM, which
# the kernel maps into that window too: the guest's DMA addresses for RAM and GPU RAM, and the host's window.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target nv2pt nv2pt_preload

out=out/main-job
mkdir -p "$out"
rm -f "$out/guest.dtb" "$out/report.json" "$out/events.log"
nv2pt=build/bin/nv2pt

echo
echo "== The emulated host: GPU 0004:04:00.0 and its NVLink2 bridges (nv2pt lspci -v, excerpt)"
"$nv2pt" lspci -v | awk '/^[0-9]+ (0004:04:00.0|0006:00:00.[01]) / {p = 1; print; next} /^[0-9]/ {p = 0} p'

echo
echo "== QEMU 7.2 under nv2pt run"
cmd=(qemu-system-ppc64 -M pseries,accel=tcg -m 1G -nographic -nodefaults
     -device vfio-pci,host=0004:04:00.0,bus=pci.0,addr=1.0
     -device vfio-pci,host=0006:00:00.0,bus=pci.0,addr=2.0
     -device vfio-pci,host=0006:00:00.1,bus=pci.0,addr=3.0
     -machine dumpdtb="$out/guest.dtb")
echo "\$ nv2pt run -- ${cmd[*]}"
"$nv2pt" run --report "$out/report.json" --log "$out/events.log" -- "${cmd[@]}"

echo
echo "== What the guest gets (nv2pt dtb show $out/guest.dtb)"
"$nv2pt" dtb show "$out/guest.dtb"

guest=${NV2PT_GUEST_DIR:-$HOME/.cache/nv2pt/guest}
echo
echo "== A real guest: Linux $(strings "$guest/vmlinux" | grep -m1 -o 'Linux version [^ ]*' | cut -d' ' -f3) ppc64le under QEMU 7.2 with the same devices"
bash scripts/make-initramfs.sh "$guest/busybox" "$out/initramfs.cpio.gz" "$guest/nv2pt_dma.ko"
cmd=(qemu-system-ppc64 -M pseries,accel=tcg -cpu POWER9 -m 1G -nographic -nodefaults -serial mon:stdio
     -kernel "$guest/vmlinux" -initrd "$out/initramfs.cpio.gz" -append "console=hvc0 quiet"
     -device vfio-pci,host=0004:04:00.0,bus=pci.0,addr=1.0
     -device vfio-pci,host=0006:00:00.0,bus=pci.0,addr=2.0
     -device vfio-pci,host=0006:00:00.1,bus=pci.0,addr=3.0)
echo "\$ nv2pt run -- $(printf '%q ' "${cmd[@]}")"
echo "(the guest's /init is scripts/guest/init; its full console is in $out/guest-console.txt; NV2PT_PAGE_SIZE=host:"
echo " QEMU sees the modelled POWER9 host's 64 KiB pages, as on that host)"
NV2PT_PAGE_SIZE=host "$nv2pt" run --report "$out/guest-report.json" --log "$out/guest-events.log" -- "${cmd[@]}" \
  >"$out/guest-console.txt" 2>&1 || { tail -n 30 "$out/guest-console.txt"; exit 1; }
tr -d '\r' <"$out/guest-console.txt" | sed -n 's/^.*\(GUEST: \)/  /p'
echo "  (host side: $(jq '.hmis | length' "$out/guest-report.json") HMIs;" \
  "links of 0004:04:00.0: $(jq -r '[.links[] | select(.gpu == "0004:04:00.0") | .state] | join(", ")' "$out/guest-report.json"))"

echo
echo "== The guest's 64-bit DMA window on the host (QEMU's TCE_CREATE for RTAS ibm,create-pe-dma-window, and the report)"
grep -a 'VFIO_IOMMU_SPAPR_TCE_CREATE.*start_addr=0x800000000000000' "$out/guest-events.log" | cut -d' ' -f3- | sed 's/^/  /'
jq -r '.containers[0].windows[] | "  window \(.slot): start \(.start), \(.page_size / 1024) KiB pages, \(.levels) levels,"
       + " size \(.window_size), \(.tces_mapped) TCEs mapped, \(.allocated_bytes) bytes of table allocated"' \
  "$out/guest-report.json"
gpu_ua=$(jq -r '[.registered_memory[] | select(.kind == "device")][0].ua' "$out/guest-report.json")
grep -a "VFIO_IOMMU_MAP_DMA{vaddr=$gpu_ua," "$out/guest-events.log" | cut -d' ' -f3- | sed 's/^/  GPU RAM: /'
jq -r '.registered_memory[] | "  registered \(.kind) memory at \(.ua): \(.size) bytes, mapped \(.mapped)"' \
  "$out/guest-report.json"
jq -r '"  locked memory: \(.locked_memory.pages) pages of 64 KiB, \(.locked_memory.pinned_pages) pinned (guest RAM only)"' \
  "$out/guest-report.json"

echo
echo "Files: $out/guest.dtb (the guest device tree), $out/report.json (the host's state at exit),"
echo "       $out/events.log (every VFIO call QEMU made, with the model's answer), $out/guest-console.txt,"
echo "       $out/guest-report.json and $out/guest-events.log (the same for the booted guest)"
