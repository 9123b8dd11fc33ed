# The seed's motivating case end to end, with a real guest: the guest kernel's own pseries IOMMU code (enable_ddw)
# creates a 64-bit DMA window that reaches its GPU RAM, and the host maps GPU RAM into it without pinning.
# The guest (scripts/guest/init) trains the NVLinks, loads nv2pt_dma (which sets a 64-bit DMA mask on the GPU as
# the NVIDIA driver does), onlines the GPU's first 16 MiB block, and prints the DMA addresses of a RAM page and a
# GPU-RAM page. The client sees the modelled host's 64 KiB pages (NV2PT_PAGE_SIZE=host), as QEMU on a POWER9 host.
# Asserted from the host's report and event log:
#   - the window QEMU created for RTAS ibm,create-pe-dma-window: start 2^59, 64 KiB pages (QEMU backs the guest's
#     16 MiB IOMMU pages with 64 KiB host pages), the levels it asked for, a size that covers the GPU RAM;
#   - guest RAM and the onlined GPU-RAM block are mapped: 256 host TCEs per 16 MiB guest TCE, the TCE behind the
#     guest's RAM DMA address holds the pinned page's hpa, the one behind its GPU-RAM DMA address GPU RAM's hpa;
#   - GPU RAM is never pinned: pinned pages are guest RAM only, the locked-memory charge is tables + guest RAM;
#   - TCE table bytes allocated equal what `nv2pt plan` predicts for that layout (levels on demand);
#   - a DMA through the model at the guest's RAM DMA address reaches the guest's byte.
# The layout (GPU, its group, its bridges, GPU-RAM address and size) comes from the topology (the script's argument,
# default: the embedded one) and its first GPU.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/guest_lib.sh"

guest_initramfs_with_module
topology_layout
note "GPU $GPU (group $GROUP, bridges ${BRIDGES[*]}), GPU RAM: host $GPU_RAM_HPA, $GPU_RAM_REAL bytes real"

export NV2PT_PAGE_SIZE=host NV2PT_DMA_REQUESTS=$WORK/dma.req
guest_start ddw "nv2pt.dma_wait" -- -m 1G $(vfio_devices "$GPU" pci.0 1 "${BRIDGES[@]}")
guest_wait_for ddw "GUEST: dma-wait" 600
log=$WORK/ddw.log
ram_dma=$(guest_says "dma ram $(guest_bdf ddw 0)" ddw | awk '{print $1}')
gpu_dma=$(guest_says "dma gpu-ram $(guest_bdf ddw 0)" ddw | awk '{print $1}')
gpu_gpa=$(guest_says "dma gpu-ram $(guest_bdf ddw 0)" ddw | awk '{print $2}')
GPU_RAM_GPA=$(guest_says gpu-ram-node ddw | head -n 1 | awk '{print $2}')
note "guest: RAM page at DMA address $ram_dma, GPU-RAM page (gpa $gpu_gpa) at $gpu_dma"
[ -n "$ram_dma" ] && [ -n "$gpu_dma" ] || fail "the guest printed no DMA addresses"
expect_eq "$(guest_says 'links trained' ddw)" ${#BRIDGES[@]} "links the guest trained (one per bridge of the topology)"
expect_eq "$(guest_says kernel ddw | grep -c 'dma_set_mask_and_coherent(64) = 0 bypass 1')" 1 "64-bit mask, direct window"

# The device writes 8 bytes at the guest's RAM DMA address and reads both pages back; the guest reads its byte.
printf '%s %s write 0123456789abcdef\n%s %s read 8\n%s %s read 8\n' "$GROUP" "$ram_dma" "$GROUP" "$ram_dma" \
  "$GROUP" "$gpu_dma" >"$WORK/dma.req"
guest_dma
guest_wait_for ddw "GUEST: done" 120
guest_stop ddw || fail "QEMU or the guest failed"
r=$WORK/ddw.json

note "the window QEMU created"
create=$(grep -a 'VFIO_IOMMU_SPAPR_TCE_CREATE.*start_addr=0x800000000000000} = 0' "$log" | tail -n 1)
[ -n "$create" ] || fail "no 64-bit window created (TCE_CREATE at 2^59)"
echo "$create"
w=$(jq -c '.containers[0].windows[] | select(.start == "0x800000000000000")' "$r")
expect_eq "$(jq -r .page_shift <<<"$w")" 16 "64-bit window page shift (64 KiB host pages)"
expect_eq "$(jq -r .levels <<<"$w")" "$(sed -n 's/.*levels=\([0-9]*\),.*/\1/p' <<<"$create")" "levels: what QEMU asked for"
size=$(jq -r .window_size <<<"$w")
end=$((gpu_gpa + 0x1000000))
[ $((size)) -ge $end ] || fail "window size $size does not reach the GPU RAM's end $(printf '0x%x' $end)"
note "window: start 2^59, 64 KiB pages, $(jq -r .levels <<<"$w") levels, size $size"

note "guest RAM and the onlined GPU-RAM block are mapped, GPU RAM unpinned"
ram_size=$(jq -r '[.registered_memory[] | select(.kind == "pinned")][0].size' "$r")
expect_eq "$(jq -r .tces_mapped <<<"$w")" $(((ram_size + 0x1000000) / 0x10000)) "TCEs: guest RAM + one 16 MiB block, in 64 KiB pages"
map16=$(grep -a -c 'VFIO_IOMMU_MAP_DMA{.*iova=0x8[0-9a-f]*,size=0x1000000,flags=0x3} = 0' "$log" || true)
expect_eq "$map16" $(((ram_size + 0x1000000) / 0x1000000)) "16 MiB MAP_DMAs (one per guest TCE)"
gpu_ua=$(jq -r '[.registered_memory[] | select(.kind == "device")][0].ua' "$r")
expect_grep "VFIO_IOMMU_MAP_DMA{vaddr=$gpu_ua,iova=$(printf '0x%x' $((0x800000000000000 + gpu_gpa))),size=0x1000000,flags=0x3} = 0" "$log"
expect_eq "$(jq -r '[.registered_memory[] | select(.kind == "device")][0].mapped' "$r")" 257 \
  "GPU-RAM registration mapped count (1 + 256 host TCEs of the 16 MiB guest TCE)"
req() { jq -r ".[$1].$2" "$NV2PT_DMA_REQUESTS.json"; }
expect_eq "$(jq length "$NV2PT_DMA_REQUESTS.json")" 3 "DMA requests answered"
expect_eq "$(req 0 error)" null "device write at the RAM DMA address"
expect_eq "$(req 0 hpa)" "$(req 0 pinned_hpa)" "TCE hpa behind the RAM DMA address = the pinned page's hpa"
expect_eq "$(req 2 hpa)" "$(printf '0x%x' $((GPU_RAM_HPA + gpu_gpa - GPU_RAM_GPA)))" "TCE hpa behind the GPU-RAM DMA address = GPU RAM's hpa"
expect_eq "$(req 2 pinned_hpa)" null "the GPU-RAM page is not pinned"
expect_eq "$(jq -r '.locked_memory.pinned_pages' "$r")" $((ram_size / 0x10000)) "pinned pages: guest RAM only"
charged=$(jq '[.containers[0].windows[].charged_pages] | add' "$r")
expect_eq "$(jq -r '.locked_memory.pages' "$r")" $((charged + ram_size / 0x10000)) "locked memory: tables + guest RAM, nothing for GPU RAM"

note "TCE table bytes: allocated vs nv2pt plan"
plan=$("$NV2PT" ${TOPOLOGY_ARG[@]+"${TOPOLOGY_ARG[@]}"} plan --ram $((ram_size)) --range "gpu-ram:$(printf '0x%x' "$gpu_gpa"):16M" --json)
levels=$(jq -r .levels <<<"$w")
predicted=$(jq -r ".levels[] | select(.levels == $levels) | .allocated_for_layout" <<<"$plan")
allocated=$(jq -r .allocated_bytes <<<"$w")
echo "allocated $allocated bytes, nv2pt plan predicts $predicted for $levels levels"
expect_eq "$allocated" "$predicted" "TCE table bytes allocated"
expect_eq "$(jq -r .charged_pages <<<"$w")" $(($(jq -r ".levels[] | select(.levels == $levels) | .charged_bytes" <<<"$plan") / 0x10000)) \
  "pages charged for the window's table"

note "a DMA through the model reaches the guest's byte"
expect_eq "$(req 1 bytes)" 0123456789abcdef "the device's read-back"
expect_eq "$(guest_says peek ddw | tail -n 1 | awk '{print $2}')" 0xefcdab8967452301 "the guest's read of its page (little-endian u64)"
expect_eq "$(jq -r '.hmis | length' "$r")" 0 "HMIs"
expect_eq "$(jq -r "[.links[] | select(.gpu == \"$GPU\" and .state == \"trained\")] | length" "$r")" ${#BRIDGES[@]} \
  "trained links of $GPU on the host"
echo PASS
