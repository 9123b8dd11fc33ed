# The QEMU 7.2 region-info use-after-free switch, in both states (docs/qemu-7.2.md#region-info-use-after-free).
#   on:  the buffers QEMU frees while nvlink2-tgt / nvlink2-link-speed point into them are kept: full NVLink2 DT.
#   off: the documented QEMU bug shows. Which tgt reads back wrong depends on glibc's heap reuse (it can lose
#        the GPU's, and then there is no NVLink node at all; here the bridges' usually go, leaving a GPU with an empty
#        ibm,npu and "No ATSD registers found"), but never does the guest get a wired NVLink2 setup: no bridge
#        has ibm,nvlink and the PHB has no ibm,mmio-atsd.
# Usage: compat_switch.sh on|off
source "$(dirname "$0")/lib.sh"
state=${1:?on or off}
name=qemu72-nvlink2-region-info-uaf
[ "$state" = on ] && switch=$name || switch=no-$name

nv2pt_run compat --compat "$switch" -- "$QEMU" "${QEMU_MACHINE[@]}" "${GPU0[@]}" -machine dumpdtb="$WORK/guest.dtb" ||
  fail "QEMU failed"
dtb=$WORK/guest.dtb
r=$WORK/compat.json
expect_eq "$(jq -r ".compat[\"$name\"].setting" "$r")" "$state" "switch setting"
if [ "$state" = on ]; then
  expect_grep "nv2pt: compat $name: keeping" "$WORK/compat.err"
  expect_eq "$(jq -r ".compat[\"$name\"].kept_buffers" "$r")" 3 "buffers kept"
  has_node "$dtb" /memory@400000000000 || fail "no GPU RAM node with the switch on"
  any_prop "$dtb" ibm,mmio-atsd || fail "no ibm,mmio-atsd with the switch on"
  [ "$(pci_nodes "$dtb" 1014 4ea | while read -r b; do prop "$dtb" "$b" ibm,nvlink; done | grep -c 13000)" = 2 ] ||
    fail "bridges not wired to links with the switch on"
else
  expect_no_grep "nv2pt: compat" "$WORK/compat.err"
  expect_eq "$(jq -r ".compat[\"$name\"].kept_buffers" "$r")" 0 "buffers kept"
  ! any_prop "$dtb" ibm,mmio-atsd || fail "ibm,mmio-atsd present although QEMU's use-after-free was not worked around"
  ! any_prop "$dtb" ibm,nvlink || fail "ibm,nvlink present although QEMU's use-after-free was not worked around"
fi
echo PASS
