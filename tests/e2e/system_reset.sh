# QMP system_reset: QEMU removes the 32-bit DMA window (one big UNMAP_DMA, then TCE_REMOVE), creates it again,
# unregisters and re-registers the GPU-RAM range, and enables EEH again. Afterwards the host state is the same as
# before: one window of the same geometry, the same registrations, the same locked-memory charge (nothing leaked).
source "$(dirname "$0")/lib.sh"

qmp_start reset -- "$QEMU" "${QMP_MACHINE[@]}" "${GPU0[@]}"
report_now reset "$WORK/before.json"
log=$WORK/reset.log
creates_before=$(grep -c 'VFIO_IOMMU_SPAPR_TCE_CREATE' "$log" || true)
expect_eq "$creates_before" 1 "TCE_CREATE before the reset"

qmp '{"execute":"system_reset"}'
case $QMP_REPLY in *'"return"'*) ;; *) fail "system_reset: $QMP_REPLY" ;; esac
# The reset runs in QEMU's main loop after the reply; wait for its last step.
for _ in $(seq 100); do
  [ "$(grep -c 'VFIO_IOMMU_SPAPR_TCE_CREATE' "$log" || true)" -ge 2 ] && [ "$(grep -c 'VFIO_EEH_PE_OP{op=1} = 0' "$log")" -ge 2 ] && break
  sleep 0.1
done
report_now reset "$WORK/after.json"

expect_grep 'VFIO_IOMMU_UNMAP_DMA{iova=0x0,size=0x40000000} = 0' "$log"
expect_eq "$(grep -c 'VFIO_IOMMU_SPAPR_TCE_REMOVE{start_addr=0x0} = 0' "$log")" 2 "TCE_REMOVE (default window at setup, ours at reset)"
expect_eq "$(grep -c 'VFIO_IOMMU_SPAPR_TCE_CREATE.* = 0' "$log")" 2 "TCE_CREATE (first reset, system_reset)"
gpu_ram=$(jq -r '[.registered_memory[] | select(.kind == "device")][0].ua' "$WORK/before.json")
expect_eq "$(grep -c "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY{vaddr=$gpu_ram,.* = 0" "$log")" 1 "GPU RAM unregistered"
expect_eq "$(grep -c "VFIO_IOMMU_SPAPR_REGISTER_MEMORY{vaddr=$gpu_ram,.* = 0" "$log")" 2 "GPU RAM registered again"

for q in '.containers[0].windows | length' '.containers[0].windows[0].window_size' '.containers[0].windows[0].levels' \
         '.containers[0].windows[0].page_shift' '.containers[0].registrations | length' '.registered_memory | length' \
         '[.registered_memory[].used] | join(",")' '.locked_memory.pages' '.locked_memory.pinned_pages'; do
  expect_eq "$(jq -r "$q" "$WORK/after.json")" "$(jq -r "$q" "$WORK/before.json")" "after system_reset: $q"
done
qmp_quit || fail "QEMU did not quit cleanly"
echo PASS
