# RLIMIT_MEMLOCK too small, without CAP_IPC_LOCK: pre-registering the guest RAM (256 MiB = 4096 pages of 64 KiB)
# fails with ENOMEM, QEMU says so and gives up on the container, and nothing stays pinned or charged.
source "$(dirname "$0")/lib.sh"
command -v prlimit >/dev/null && command -v setpriv >/dev/null || skip "prlimit/setpriv (util-linux) missing"

# 4 MiB, or the hard limit if lower: lowering needs no privilege (raising would need CAP_SYS_RESOURCE).
limit=$((4 << 20))
hard=$(ulimit -Hl)
[ "$hard" = unlimited ] || [ $((hard * 1024)) -ge $limit ] || limit=$((hard * 1024))
# Drop CAP_IPC_LOCK from the bounding and inheritable sets so that even root's program runs without it.
drop_ipc_lock=()
if [ "$(id -u)" -eq 0 ]; then
  drop_ipc_lock=(setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock --)
fi
rc=0
"${drop_ipc_lock[@]}" prlimit --memlock=$limit:$limit \
  "$NV2PT" run --report "$WORK/memlock.json" --log "$WORK/memlock.log" -- \
  "$QEMU" "${QEMU_MACHINE[@]}" "${GPU0[@]}" -machine dumpdtb="$WORK/guest.dtb" >"$WORK/memlock.err" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "QEMU started with RLIMIT_MEMLOCK = $limit bytes for 256 MiB of guest RAM"
# QEMU 7.2 formats this error from -ret (ret is the ioctl's -1), so it always prints "Operation not permitted";
# the event log shows what the model returned.
expect_grep "failed to setup container for group 4: RAM memory listener initialization failed: Memory registering failed" \
  "$WORK/memlock.err"
expect_grep "VFIO_IOMMU_SPAPR_REGISTER_MEMORY{vaddr=0x[0-9a-f]*,size=0x10000000} = ENOMEM" "$WORK/memlock.log"
r=$WORK/memlock.json
expect_eq "$(jq -r '.registered_memory | length' "$r")" 0 "registered regions left"
expect_eq "$(jq -r '.locked_memory.pages' "$r")" 0 "locked pages left"
expect_eq "$(jq -r '.locked_memory.pinned_pages' "$r")" 0 "pinned pages left"
expect_eq "$(jq -r '.locked_memory.underflows' "$r")" 0 "accounting underflows"
expect_eq "$(jq -r '[.containers[] | select(.iommu != null)] | length' "$r")" 0 "containers left with an IOMMU"
echo PASS
