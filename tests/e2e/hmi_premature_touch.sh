# A touch of GPU RAM before the GPU's NVLinks are trained is an HMI (GPU RAM is faulted in page by page, never before
# training: docs/kernel/regions.md#gpu-ram-read-and-write). QEMU's monitor reads guest-physical 0x400000000000, the
# GPU-RAM window it mapped from the device's region 9, so the read reaches the model's userfaultfd service:
#   --hmi log: recorded (time, GPU, host address, cause), the page reads as zeros, QEMU goes on.
#   --hmi fatal (the default): QEMU dies of SIGBUS, as the real host's machine check kills it. The monitor read runs
#   on QEMU's main thread, which blocks SIGBUS (it takes signals through a signalfd); a machine check cannot be
#   blocked, and the model forces it through as the kernel's force_sig does.
source "$(dirname "$0")/lib.sh"
read_gpu_ram='{"execute":"human-monitor-command","arguments":{"command-line":"xp /1gx 0x400000000000"}}'

qmp_start logged --hmi log -- "$QEMU" "${QMP_MACHINE[@]}" "${GPU0[@]}"
report_now logged "$WORK/before.json"
expect_eq "$(jq -r '.hmis | length' "$WORK/before.json")" 0 "HMIs before the touch"
qmp "$read_gpu_ram"
case $QMP_REPLY in *'0000400000000000: 0x0000000000000000'*) ;; *) fail "monitor read: $QMP_REPLY" ;; esac
report_now logged "$WORK/after.json"
h='.hmis[0]'
expect_eq "$(jq -r '.hmis | length' "$WORK/after.json")" 1 "HMIs after the touch"
expect_eq "$(jq -r "$h.gpu" "$WORK/after.json")" 0004:04:00.0 "HMI GPU"
expect_eq "$(jq -r "$h.cause" "$WORK/after.json")" untrained-link "HMI cause"
# The host physical address: the GPU's window base from the topology (the guest sees it at 64 TiB).
expect_eq "$(jq -r "$h.hpa" "$WORK/after.json")" "$(jq -r '.gpu_ram[0].window_base' "$WORK/after.json")" "HMI address"
expect_eq "$(jq -r '[.links[] | select(.gpu == "0004:04:00.0")][0].state' "$WORK/after.json")" untrained "link state"
qmp '{"execute":"query-status"}'
qmp_quit || fail "QEMU did not survive a logged HMI"

qmp_start fatal --hmi fatal -- "$QEMU" "${QMP_MACHINE[@]}" "${GPU0[@]}"
echo "$read_gpu_ram" >&"${QMP[1]}"
rc=0
wait "$QMP_NV2PT_PID" || rc=$?
expect_eq "$rc" $((128 + 7)) "nv2pt run's status after a fatal HMI (128 + SIGBUS)"

echo PASS
