# A group with a member bound to a host driver ("nvidia") is not viable: VFIO_GROUP_GET_STATUS has no VIABLE flag
# and QEMU refuses it with "group 4 is not viable".
source "$(dirname "$0")/lib.sh"
rc=0
nv2pt_run nonviable --topology "$E2E_TOPOLOGIES/bridge-bound-to-nvidia.dts" -- \
  "$QEMU" "${QEMU_MACHINE[@]}" "${GPU0[@]}" -machine dumpdtb="$WORK/guest.dtb" || rc=$?
[ $rc -ne 0 ] || fail "QEMU accepted a non-viable group"
expect_grep "group 4 is not viable" "$WORK/nonviable.err"
expect_grep "VFIO_GROUP_GET_STATUS = 0" "$WORK/nonviable.log"
# Nothing was set up: the group was opened and closed, no container kept an IOMMU, no memory registered.
expect_eq "$(jq -r '.registered_memory | length' "$WORK/nonviable.json")" 0 "registered memory"
expect_eq "$(jq -r '.locked_memory.pages' "$WORK/nonviable.json")" 0 "locked pages"
echo PASS
