# One V100 and its two NVLink2 bridges (IOMMU group 4) on QEMU's default PHB: the guest DTB carries every NVLink2 node
# QEMU writes (docs/qemu-7.2.md#guest-device-tree), with the values of the topology.
#
# Expected values come from the topology DTB itself: tgt = ibm,device-tgt-addr and the link speed of the
# bridges, the window = the size of the GPU's memory node. The memory node size is the GPU-RAM region size, which
# the kernel makes the window size (128 GiB, vfio_pci_nvdia_v100_nvlink2_init: docs/kernel/regions.md#gpu-ram-init),
# not the 16 GiB of RAM behind it.
source "$(dirname "$0")/lib.sh"

topo=$E2E_DEFAULT_DTB
tgt=$(u64 $(prop "$topo" /pciex@6030200000000/pci@0 ibm,device-tgt-addr))
speed=$(prop "$topo" /pciex@6030200000000/pci@0 ibm,nvlink-speed)
window=$(u64 $(prop "$topo" /memory@40000000000 reg | cut -d' ' -f3-4))
loc=$(fdtget -t s "$topo" /pciex@600c3c0400000/3d@4 ibm,loc-code)
note "topology: tgt $tgt, link speed 0x$speed, GPU RAM window $window"

nv2pt_run dtb -- "$QEMU" "${QEMU_MACHINE[@]}" "${GPU0[@]}" -machine dumpdtb="$WORK/guest.dtb" || fail "QEMU failed"
dtb=$WORK/guest.dtb
expect_grep "dtb dumped" "$WORK/dtb.err"

# GPU RAM: memory@<64 TiB> for PHB index 0.
mem=/memory@400000000000
has_node "$dtb" $mem || fail "$mem missing"
expect_eq "$(fdtget -t s "$dtb" $mem device_type)" "memory" "$mem device_type"
expect_eq "$(fdtget -t s "$dtb" $mem compatible)" "ibm,coherent-device-memory" "$mem compatible"
expect_eq "$(u64 $(prop "$dtb" $mem reg | cut -d' ' -f1-2))" 0x400000000000 "$mem reg address"
expect_eq "$(u64 $(prop "$dtb" $mem reg | cut -d' ' -f3-4))" "$window" "$mem reg size (the region size = window size)"
expect_eq "$(prop "$dtb" $mem linux,usable-memory)" "4000 0 0 0" "$mem linux,usable-memory"
expect_eq "$(prop "$dtb" $mem ibm,associativity)" "4 1 1 1 1" "$mem ibm,associativity (GPU NUMA id 1)"
expect_eq "$(prop "$dtb" $mem phandle)" "110000ff" "$mem phandle"

# NPU link nodes.
expect_eq "$(fdtget -t s "$dtb" /npuphb0 compatible)" "ibm,power9-npu" "/npuphb0 compatible"
for k in 0 1; do
  expect_eq "$(fdtget -t s "$dtb" /npuphb0/link@$k compatible)" "ibm,npu-link" "link@$k compatible"
  expect_eq "$(prop "$dtb" /npuphb0/link@$k ibm,npu-link-index)" "$k" "link@$k index"
  expect_eq "$(prop "$dtb" /npuphb0/link@$k phandle)" "13000$k" "link@$k phandle"
done

# ATSD registers on the PHB: 128 TiB + k * 64 KiB.
expect_eq "$(prop "$dtb" /pci@800000020000000 ibm,mmio-atsd)" "8000 0 8000 10000" "ibm,mmio-atsd"

# The GPU (devfn 1.0 = 8) and its bridges (2.0, 3.0).
gpu=$(pci_nodes "$dtb" 10de 1db1)
[ -n "$gpu" ] || fail "no GPU node"
expect_eq "$(prop "$dtb" "$gpu" phandle)" "12000008" "GPU phandle"
expect_eq "$(prop "$dtb" "$gpu" ibm,npu)" "12000010 12000018" "GPU ibm,npu"
expect_eq "$(fdtget -t s "$dtb" "$gpu" ibm,loc-code)" "$loc" "GPU ibm,loc-code (served from /proc/device-tree)"
k=0
for b in $(pci_nodes "$dtb" 1014 4ea); do
  expect_eq "$(prop "$dtb" "$b" ibm,gpu)" "12000008" "$b ibm,gpu"
  expect_eq "$(prop "$dtb" "$b" ibm,nvlink)" "13000$k" "$b ibm,nvlink"
  expect_eq "$(prop "$dtb" "$b" memory-region)" "110000ff" "$b memory-region"
  expect_eq "$(u64 $(prop "$dtb" "$b" ibm,device-tgt-addr))" "$tgt" "$b ibm,device-tgt-addr"
  expect_eq "$(prop "$dtb" "$b" ibm,nvlink-speed)" "$speed" "$b ibm,nvlink-speed"
  k=$((k + 1))
done
expect_eq "$k" 2 "bridge nodes"
expect_eq "$(prop "$dtb" /rtas ibm,max-associativity-domains | awk '{print $NF}')" 2 "max-associativity-domains"

# QEMU 7.2 was detected, the compat switch kept the GPU's and both bridges' region-info buffers.
expect_grep "nv2pt: compat qemu72-nvlink2-region-info-uaf" "$WORK/dtb.err"
r=$WORK/dtb.json
expect_eq "$(jq -r '.compat["qemu72-nvlink2-region-info-uaf"].active' "$r")" true "compat active"
expect_eq "$(jq -r '.compat["qemu72-nvlink2-region-info-uaf"].kept_buffers' "$r")" 3 "buffers kept"
expect_eq "$(jq -r '[.devices[].address] | join(",")' "$r")" "0004:04:00.0,0006:00:00.0,0006:00:00.1" "devices"
expect_eq "$(jq -r '.containers[0].iommu' "$r")" spapr-tce-v2 "container IOMMU"
expect_eq "$(jq -r '.containers[0].windows | length' "$r")" 1 "windows"
expect_eq "$(jq -r '.containers[0].windows[0].window_size' "$r")" 0x40000000 "32-bit window size"
expect_eq "$(jq -r '[.registered_memory[] | select(.kind == "device")][0].size' "$r")" "$window" "GPU RAM registered"
expect_eq "$(jq -r '.hmis | length' "$r")" 0 "HMIs"
echo PASS
