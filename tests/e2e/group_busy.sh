# Group ownership is exclusive across processes: while one QEMU holds IOMMU group 4, a second one cannot open
# /dev/vfio/4 (EBUSY, through the lock files in NV2PT_RUNTIME_DIR); once the first quits, the group is free again.
source "$(dirname "$0")/lib.sh"

qmp_start first -- "$QEMU" "${QMP_MACHINE[@]}" "${GPU0[@]}"
rc=0
nv2pt_run second -- "$QEMU" "${QEMU_MACHINE[@]}" "${GPU0[@]}" -machine dumpdtb="$WORK/second.dtb" || rc=$?
[ $rc -ne 0 ] || fail "a second QEMU got group 4 while the first one held it"
expect_grep "/dev/vfio/4: Device or resource busy" "$WORK/second.err"
expect_grep "open /dev/vfio/4 = EBUSY" "$WORK/second.log"

# The first one is unaffected and still owns its devices.
qmp '{"execute":"query-status"}'
case $QMP_REPLY in *'"status": "prelaunch"'* | *'"status":"prelaunch"'*) ;; *) fail "first QEMU: $QMP_REPLY" ;; esac
report_now first "$WORK/first-running.json"
expect_eq "$(jq -r '.devices | length' "$WORK/first-running.json")" 3 "devices of the first QEMU"
qmp_quit || fail "first QEMU did not quit cleanly"

# Released with the process: a third QEMU gets the group.
nv2pt_run third -- "$QEMU" "${QEMU_MACHINE[@]}" "${GPU0[@]}" -machine dumpdtb="$WORK/third.dtb" ||
  fail "group 4 still busy after the first QEMU quit"
echo PASS
