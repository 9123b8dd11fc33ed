# Every GPU of the topology in one real guest, each IOMMU group on its own vPHB (index 1, 2, ...): the guest trains
# every NVLink (12 on the default machine), onlines the first block of each GPU's RAM node, and nv2pt_dma binds each
# GPU, so the guest kernel creates one 64-bit DMA window per PHB. Asserted: every link trained (guest and host),
# every GPU-RAM node onlined, and in each GPU's own window the TCE behind that GPU's RAM (at 2^59 + its gpa) holds
# that GPU's RAM hpa, unpinned; pinned memory is guest RAM only. The layout comes from the topology (the script's
# argument, default: the embedded one).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/guest_lib.sh"
guest_initramfs_with_module

gpus=$("$NV2PT" ${TOPOLOGY_ARG[@]+"${TOPOLOGY_ARG[@]}"} lspci | grep -c ' 3D: ')
args=() groups=() hpas=() links=0
for ((i = 0; i < gpus; i++)); do
  topology_layout $i
  args+=(-device "spapr-pci-host-bridge,id=phb$((i + 1)),index=$((i + 1))")
  args+=($(vfio_devices "$GPU" "phb$((i + 1)).0" 0 "${BRIDGES[@]}"))
  groups+=("$GROUP") hpas+=("$GPU_RAM_HPA") gpus_addr[$i]=$GPU
  links=$((links + ${#BRIDGES[@]}))
done
note "$gpus GPUs, $links NVLinks, groups ${groups[*]}"

export NV2PT_PAGE_SIZE=host NV2PT_DMA_REQUESTS=$WORK/dma.req
guest_start six "nv2pt.dma_wait" -- -m 1G "${args[@]}"
guest_wait_for six "GUEST: dma-wait" 900
expect_eq "$(guest_says 'links trained' six)" "$links" "links the guest trained"
expect_eq "$(guest_says gpu-ram-node six | wc -l)" "$gpus" "GPU-RAM nodes"
expect_eq "$(guest_says onlined six | wc -l)" "$gpus" "GPU-RAM blocks onlined"
expect_eq "$(guest_says kernel six | grep -c 'dma_set_mask_and_coherent(64) = 0 bypass 1')" "$gpus" "64-bit windows (direct)"
# GPU-RAM node i (device-tree order = PHB index order) is GPU i's; its gpa is where the guest sees that GPU's RAM.
mapfile -t gpas < <(guest_says gpu-ram-node six | awk '{print $2}')
: >"$WORK/dma.req"
for ((i = 0; i < gpus; i++)); do
  printf '%s %x read 8\n' "${groups[$i]}" $((0x800000000000000 + ${gpas[$i]})) >>"$WORK/dma.req"
done
guest_dma
guest_wait_for six "GUEST: done" 120
guest_stop || fail "QEMU or the guest failed"
r=$WORK/six.json
expect_eq "$(jq length "$NV2PT_DMA_REQUESTS.json")" "$gpus" "DMA requests answered"
for ((i = 0; i < gpus; i++)); do
  q=".[$i]"
  expect_eq "$(jq -r "$q.hpa" "$NV2PT_DMA_REQUESTS.json")" "$(printf '0x%x' "${hpas[$i]}")" \
    "GPU ${gpus_addr[$i]} (group ${groups[$i]}): TCE at 2^59 + ${gpas[$i]} = its GPU RAM's hpa"
  expect_eq "$(jq -r "$q.pinned_hpa" "$NV2PT_DMA_REQUESTS.json")" null "GPU ${gpus_addr[$i]}: its GPU RAM is not pinned"
done
expect_eq "$(jq -r '[.links[] | select(.state == "trained")] | length' "$r")" "$links" "trained links on the host"
expect_eq "$(jq -r '[.containers[].windows[] | select(.start == "0x800000000000000" and .page_shift == 16)] | length' "$r")" \
  "$gpus" "64-bit windows of 64 KiB pages"
ram_size=$(jq -r '[.registered_memory[] | select(.kind == "pinned")][0].size' "$r")
expect_eq "$(jq -r '.locked_memory.pinned_pages' "$r")" $((ram_size / 0x10000)) "pinned pages: guest RAM only"
expect_eq "$(jq -r '.hmis | length' "$r")" 0 "HMIs"
echo PASS
