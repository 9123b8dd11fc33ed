# Guest TCE traffic under TCG: a 23-instruction guest (make_tcetest_elf) does H_PUT_TCE(liobn 0x80000000, ioba 0,
# 0x1000000 | R | W) and powers off. QEMU turns the hypercall into VFIO_IOMMU_MAP_DMA; the TCE must land in the
# emulated table holding the hpa the page pinner gave the guest-RAM page at gpa 0x1000000.
source "$(dirname "$0")/lib.sh"
: "${MAKE_TCETEST_ELF:?}"
"$MAKE_TCETEST_ELF" "$WORK/tcetest.elf"

rc=0
nv2pt_run tce -- timeout 60 "$QEMU" -M pseries,accel=tcg,x-vof=on -m 256M -nographic -nodefaults -no-reboot \
  -kernel "$WORK/tcetest.elf" "${GPU0[@]}" || rc=$?
[ $rc -ne 124 ] || fail "the guest did not power off"
[ $rc -eq 0 ] || fail "QEMU exited with $rc"

r=$WORK/tce.json
ram=$(jq -r '[.registered_memory[] | select(.kind == "pinned")][0].ua' "$r")
[ "$ram" != null ] || fail "guest RAM was not registered"
expect_grep "VFIO_IOMMU_MAP_DMA{vaddr=$(printf '0x%x' $((ram + 0x1000000))),iova=0x0,size=0x1000,flags=0x3} = 0" \
  "$WORK/tce.log"
w='.containers[0].windows[0]'
expect_eq "$(jq -r "$w.tces_mapped" "$r")" 1 "TCEs in the window"
expect_eq "$(jq -r "$w.tces[0].ioba" "$r")" 0x0 "TCE ioba"
expect_eq "$(jq -r "$w.tces[0].perm" "$r")" rw "TCE permissions"
expect_eq "$(jq -r "$w.tces[0].ua" "$r")" "$(printf '0x%x' $((ram + 0x1000000)))" "TCE user address (guest RAM + gpa)"
hpa=$(jq -r "$w.tces[0].hpa" "$r")
pinned=$(jq -r "$w.tces[0].pinned_hpa" "$r")
[ "$pinned" != null ] || fail "the page behind the TCE is not pinned"
expect_eq "$hpa" "$pinned" "TCE hpa = the hpa of the pinned guest page"
# The region's mapped count includes the TCE (1 for the registration + 1).
expect_eq "$(jq -r '[.registered_memory[] | select(.kind == "pinned")][0].mapped' "$r")" 2 "guest RAM mapped count"
echo PASS
