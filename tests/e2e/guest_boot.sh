# A real ppc64le Linux guest (Debian bookworm's kernel, a busybox initramfs; scripts/fetch-guest.sh) booted by QEMU 7.2
# with GPU 0004:04:00.0 and its two NVLink2 bridges passed through from the model, and then driven the way the NVIDIA
# driver and nvidia-persistenced drive a real one:
#   1. the guest sees the three functions, the GPU RAM node (ibm,coherent-device-memory) and its empty NUMA node;
#   2. it trains both NVLinks through the bridges' config space (skiboot's procedure interface at 0x80, which QEMU
#      passes through to the model): PHY reset, TX ZCAL, RX DCCAL, RX training, polling each to completion;
#   3. it writes and reads GPU RAM through /dev/mem, hot-adds the first 16 MiB block and onlines it: node1 has
#      16 MiB.
# The GPU, its bridges and GPU RAM come from the topology (the script's argument, default: the embedded one).
# Run 1 uses the default HMI policy, fatal: a guest that trains before it touches runs to its power-off. Run 2
# (policy log) first reads GPU RAM before training: exactly one HMI, untrained link, at the window base.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/guest_lib.sh"
# The guest's /init is scripts/guest/init: it reports "GUEST: key value" lines.
topology_layout

"$(dirname "$0")/../../scripts/make-initramfs.sh" "$GUEST_DIR/busybox" "$WORK/initramfs.cpio.gz"

boot() {
  local name=$1 append=$2
  shift 2
  nv2pt_run "$name" ${TOPOLOGY_ARG[@]+"${TOPOLOGY_ARG[@]}"} "$@" -- timeout 240 "$QEMU" -M pseries,accel=tcg -cpu POWER9 -m 1G -nographic -nodefaults \
    -serial mon:stdio -kernel "$GUEST_DIR/vmlinux" -initrd "$WORK/initramfs.cpio.gz" -append "console=hvc0 quiet $append" \
    $(vfio_devices "$GPU" pci.0 1 "${BRIDGES[@]}")
}
first() { guest_says "$@" | head -n 1; }

note "run 1: default HMI policy (fatal), links trained before any touch"
boot trained "" || fail "QEMU or the guest failed (status $?)"
expect_eq "$(grep -ac 'GUEST: pci 0x10de:0x1db[15]' "$WORK/trained.err")" 1 "GPUs the guest sees"
expect_eq "$(grep -ac 'GUEST: pci 0x1014:0x04ea' "$WORK/trained.err")" ${#BRIDGES[@]} "NVLink2 bridges the guest sees"
expect_eq "$(first gpu-ram-node trained | awk '{print $1}')" "ibm,coherent-device-memory" "GPU RAM node compatible"
expect_eq "$(first gpu-ram-node trained | awk '{print $4}')" "$(printf '0x%x' "$GPU_RAM_WINDOW")" "GPU RAM node size (the window)"
expect_grep "GUEST: numa-node1 present" "$WORK/trained.err"
expect_eq "$(first 'procedures completed' trained)" $((4 * ${#BRIDGES[@]})) "link procedures completed (4 per bridge)"
expect_eq "$(first 'links trained' trained)" ${#BRIDGES[@]} "links trained"
expect_eq "$(first 'gpu-ram read-back' trained | awk '{print $2}')" 0x1122334455667788 "GPU RAM read-back"
expect_grep "GUEST: onlined memory" "$WORK/trained.err"
expect_eq "$(first node1-memory trained)" "16384 kB" "node1 memory after onlining one block"
expect_grep "GUEST: done" "$WORK/trained.err"
expect_eq "$(jq -r '.hmis | length' "$WORK/trained.json")" 0 "HMIs"
expect_eq "$(jq -r "[.links[] | select(.gpu == \"$GPU\" and .state == \"trained\")] | length" "$WORK/trained.json")" \
  ${#BRIDGES[@]} "trained links of $GPU"

note "run 2: policy log, GPU RAM read before training"
boot early "nv2pt.early_touch" --hmi log || fail "QEMU or the guest failed (status $?)"
expect_eq "$(first 'early read' early)" 0x0000000000000000 "the early read (zeros, logged)"
expect_eq "$(first 'gpu-ram read-back' early | awk '{print $2}')" 0x1122334455667788 "GPU RAM read-back after training"
expect_eq "$(jq -r '.hmis | length' "$WORK/early.json")" 1 "HMIs"
expect_eq "$(jq -r '.hmis[0].cause' "$WORK/early.json")" untrained-link "HMI cause"
expect_eq "$(jq -r '.hmis[0].hpa' "$WORK/early.json")" "$(jq -r '.gpu_ram[0].window_base' "$WORK/early.json")" \
  "HMI address (the window base)"
echo PASS
