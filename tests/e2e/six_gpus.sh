# All six V100s of the default topology, each IOMMU group on its own vPHB (index 1..6), as QEMU lays them out
# (docs/qemu-7.2.md#guest-device-tree): GPU RAM at 64 TiB + index * 2 TiB, ATSD at 128 TiB + index * 0x120000, tgt from
# the topology, and NUMA ids handed out in reverse PHB creation order (PHBs are reset newest first).
source "$(dirname "$0")/lib.sh"

# index GPU bridge0 bridge1 (the topology's GPU-bridge pairing, groups 4 5 6 10 11 12)
layout=(
  "1 0004:04:00.0 0006:00:00.0 0006:00:00.1"
  "2 0004:05:00.0 0006:00:01.0 0006:00:01.1"
  "3 0004:06:00.0 0006:00:02.0 0006:00:02.1"
  "4 0035:03:00.0 0007:00:00.0 0007:00:00.1"
  "5 0035:04:00.0 0007:00:01.0 0007:00:01.1"
  "6 0035:05:00.0 0007:00:02.0 0007:00:02.1"
)
args=()
for entry in "${layout[@]}"; do
  set -- $entry
  args+=(-device "spapr-pci-host-bridge,id=phb$1,index=$1")
  args+=($(gpu_devices "$2" "$3" "$4" "phb$1.0" 0))
done

nv2pt_run six -- "$QEMU" "${QEMU_MACHINE[@]}" "${args[@]}" -machine dumpdtb="$WORK/guest.dtb" || fail "QEMU failed"
dtb=$WORK/guest.dtb
"$NV2PT" lspci -v >"$WORK/lspci.txt"

for entry in "${layout[@]}"; do
  set -- $entry
  i=$1
  gpa=$(printf '%x' $((0x400000000000 + i * 0x20000000000)))
  mem=/memory@$gpa
  has_node "$dtb" "$mem" || fail "$mem missing (PHB $i)"
  expect_eq "$(prop "$dtb" "$mem" ibm,associativity)" "4 $((7 - i)) $((7 - i)) $((7 - i)) $((7 - i))" "$mem NUMA id"
  phb=$(all_nodes "$dtb" | grep -x "/pci@80000002000000$i" || true)
  [ -n "$phb" ] || fail "PHB $i node missing"
  atsd=$((0x800000000000 + i * 0x120000))
  expect_eq "$(prop "$dtb" "$phb" ibm,mmio-atsd)" \
    "$(printf '%x %x %x %x' $((atsd >> 32)) $((atsd & 0xffffffff)) $((atsd >> 32)) $(((atsd + 0x10000) & 0xffffffff)))" \
    "PHB $i ibm,mmio-atsd"
  # The bridges' tgt is the topology's ibm,device-tgt-addr of that GPU's NPU #0.
  want=$(awk -v a="$3" '$2 == a {f = 1; next} f && /TGT:/ {print $2; exit}' "$WORK/lspci.txt")
  for b in $(all_nodes "$dtb" | grep "^$phb/"); do
    [ "$(prop "$dtb" "$b" vendor-id)" = 1014 ] || continue
    expect_eq "$(u64 $(prop "$dtb" "$b" ibm,device-tgt-addr))" "$(printf '0x%x' "$want")" "$b tgt"
  done
  has_node "$dtb" "/npuphb$i" || fail "/npuphb$i missing"
done
expect_eq "$(prop "$dtb" /rtas ibm,max-associativity-domains | awk '{print $NF}')" 7 "max-associativity-domains"
expect_eq "$(jq -r '.containers | length' "$WORK/six.json")" 6 "one container per vPHB"
expect_eq "$(jq -r '.devices | length' "$WORK/six.json")" 18 "devices open"
expect_eq "$(jq -r '.compat["qemu72-nvlink2-region-info-uaf"].kept_buffers' "$WORK/six.json")" 18 "buffers kept"
echo PASS
