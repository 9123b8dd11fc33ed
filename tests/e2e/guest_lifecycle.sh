# The real guest's life cycle around its 64-bit DMA window and onlined GPU RAM, QEMU driven through QMP, the guest's
# console through a pipe. Every boot reads GPU RAM once before training (nv2pt.early_touch, --hmi log), trains the
# links, creates the 64-bit window, onlines GPU RAM, and then holds.
#   - device_del of the GPU or of one of its bridges while its RAM is onlined: QEMU 7.2 refuses to unplug NVLink2 devices
#     (spapr_pci_unplug_request: "PCI: Cannot unplug NVLink2 devices"); the host state does not change.
#   - QMP system_reset, then the guest's own `reboot`: the GPU reset drops the links (the next boot's early touch is
#     an HMI again), the next boot retrains and maps again, and nothing leaks: locked memory, registrations, windows
#     and their table bytes, mapped counts are back to the first boot's figures.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/guest_lib.sh"
guest_initramfs_with_module
topology_layout

mkfifo "$WORK/con.in" "$WORK/con.out"
cat "$WORK/con.out" >"$WORK/life.console" &
export NV2PT_PAGE_SIZE=host
devs=($(vfio_devices "$GPU" pci.0 1 "${BRIDGES[@]}"))
devs[1]+=",id=gpu0"
devs[3]+=",id=bridge0"
qmp_start life --hmi log ${TOPOLOGY_ARG[@]+"${TOPOLOGY_ARG[@]}"} -- "$QEMU" -M pseries,accel=tcg -cpu POWER9 -m 1G \
  -display none -nodefaults -serial pipe:"$WORK/con" -qmp stdio -kernel "$GUEST_DIR/vmlinux" \
  -initrd "$WORK/initramfs.cpio.gz" -append "console=hvc0 quiet nv2pt.early_touch nv2pt.hold" "${devs[@]}"
exec 7>"$WORK/con.in"

# wait_done N: until the console shows the Nth "GUEST: done".
wait_done() {
  local i
  for ((i = 0; i < 6000; i++)); do
    [ "$(grep -a -c 'GUEST: done' "$WORK/life.console")" -ge "$1" ] && return 0
    sleep 0.1
  done
  fail "boot $1 did not finish"
}
said() { tr -d '\r' <"$WORK/life.console" | sed -n "s/^.*GUEST: $1 *//p"; }

wait_done 1
report_now life "$WORK/boot1.json"
expect_eq "$(said 'links trained' | sed -n 1p)" ${#BRIDGES[@]} "boot 1: links trained"
expect_eq "$(jq -r '.hmis | length' "$WORK/boot1.json")" 1 "boot 1: the early touch is an HMI"

note "device_del of the GPU and of a bridge while the GPU's RAM is onlined"
for id in gpu0 bridge0; do
  qmp "{\"execute\":\"device_del\",\"arguments\":{\"id\":\"$id\"}}"
  case $QMP_REPLY in *'Cannot unplug NVLink2 devices'*) ;; *) fail "device_del $id: $QMP_REPLY" ;; esac
done
report_now life "$WORK/after_del.json"

note "QMP system_reset"
qmp '{"execute":"system_reset"}'
wait_done 2
report_now life "$WORK/boot2.json"
note "the guest's reboot"
echo reboot >&7
wait_done 3
report_now life "$WORK/boot3.json"

same() {  # same QUERY A B WHAT
  expect_eq "$(jq -c "$1" "$3")" "$(jq -c "$1" "$2")" "$4: $1"
}
steady='{windows: [.containers[].windows[] | {start, page_shift, levels, window_size, allocated_bytes, charged_pages, tces_mapped}],
  registrations: [.containers[].registrations | length], regions: [.registered_memory[] | {kind, size, used, mapped}],
  locked: .locked_memory.pages, pinned: .locked_memory.pinned_pages, devices: [.devices[] | {address, open_count}]}'
same "$steady" "$WORK/boot1.json" "$WORK/after_del.json" "after device_del"
same '.hmis | length' "$WORK/boot1.json" "$WORK/after_del.json" "after device_del"
for b in 2 3; do
  same "$steady" "$WORK/boot1.json" "$WORK/boot$b.json" "boot $b"
  expect_eq "$(jq -r '.hmis | length' "$WORK/boot$b.json")" "$b" "boot $b: its early touch is an HMI (the reset dropped the links)"
  expect_eq "$(jq -r "[.links[] | select(.gpu == \"$GPU\" and .state == \"trained\")] | length" "$WORK/boot$b.json")" \
    ${#BRIDGES[@]} "boot $b: links retrained"
  expect_eq "$(said 'links trained' | sed -n ${b}p)" ${#BRIDGES[@]} "boot $b: the guest trained its links"
done
expect_eq "$(grep -a -c 'VFIO_IOMMU_SPAPR_TCE_CREATE.*start_addr=0x800000000000000} = 0' "$WORK/life.log")" 3 \
  "64-bit windows created (one per boot)"
echo off >&7
rc=0
wait "$QMP_NV2PT_PID" || rc=$?
expect_eq "$rc" 0 "QEMU's exit after the guest's power-off"
echo PASS
