# Nothing VFIO-related reaches the real kernel (docs/qemu-7.2.md#libc-entry-points): under strace -f, no ioctl with a
# VFIO number (type ';' = 0x3b), and no open/stat/readlink of /dev/vfio or /sys/bus/pci paths. The interposer serves
# them all.
source "$(dirname "$0")/lib.sh"
command -v strace >/dev/null || skip "strace not installed"

rc=0
strace -f -qq -o "$WORK/strace.txt" -e trace=ioctl,open,openat,stat,lstat,newfstatat,statx,readlink,readlinkat,access,faccessat,faccessat2 \
  "$NV2PT" run --report "$WORK/s.json" -- "$QEMU" "${QEMU_MACHINE[@]}" "${GPU0[@]}" -machine dumpdtb="$WORK/guest.dtb" \
  >"$WORK/s.err" 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "QEMU under strace exited with $rc"
has_node "$WORK/guest.dtb" /memory@400000000000 || fail "the run under strace did not produce the NVLink2 DT"
# Everything the client did reached the model (sanity check that the run was the real thing).
[ "$(jq -r '.devices | length' "$WORK/s.json")" = 3 ] || fail "devices not opened"

if grep -E 'ioctl\([0-9]+, (VFIO_|_IOC\([^,]*, 0x3b)' "$WORK/strace.txt"; then fail "VFIO ioctl reached the kernel"; fi
if grep -E '"/dev/vfio|"/sys/bus/pci|"/sys/kernel/iommu_groups' "$WORK/strace.txt"; then
  fail "an emulated path reached the kernel"
fi
if grep -E '"/proc/device-tree' "$WORK/strace.txt"; then fail "/proc/device-tree reached the kernel"; fi
echo PASS
