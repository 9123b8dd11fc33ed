# A real ppc64le Linux guest (Debian bookworm's kernel, a busybox initramfs; scripts/fetch-guest.sh) booted by QEMU 7.2
# with GPU 0004:04:00.0 and its two NVLink2 bridges passed through from the model, and then driven the way the NVIDIA
# driver and nvidia-persistenced drive a real one:
#   1. the guest sees the three functions, the GPU RAM node (ibm,coherent-device-memory) and its empty NUMA node;
#   2. it trains both NVLinks through the bridges' config space (skiboot's procedure interface at 0x80, which QEMU
#      passes through to the model): PHY reset, TX ZCAL, RX DCCAL, RX training, polling each to completion;
#   3. it writes and reads GPU RAM through /dev/mem, hot-adds the first 16 MiB block and onlines it: node1 has
#      16 MiB.
# Run 1 uses the default HMI policy, fatal: a guest that trains before it touches runs to its power-off. Run 2
# (policy log) first reads GPU RAM before training: exactly one HMI, untrained link, at the window base.
source "$(dirname "$0")/lib.sh"
GUEST_DIR=${NV2PT_GUEST_DIR:-$HOME/.cache/nv2pt/guest}
[ -s "$GUEST_DIR/vmlinux" ] && [ -s "$GUEST_DIR/busybox" ] ||
  skip "no guest kernel in $GUEST_DIR (scripts/fetch-guest.sh fetches it; scripts/setup.sh runs it)"
command -v cpio >/dev/null || skip "cpio not installed"
# The guest's /init is scripts/guest/init: it reports "GUEST: key value" lines.

"$(dirname "$0")/../../scripts/make-initramfs.sh" "$GUEST_DIR/busybox" "$WORK/initramfs.cpio.gz"

boot() {
  local name=$1 append=$2
  shift 2
  nv2pt_run "$name" "$@" -- timeout 240 "$QEMU" -M pseries,accel=tcg -cpu POWER9 -m 1G -nographic -nodefaults \
    -serial mon:stdio -kernel "$GUEST_DIR/vmlinux" -initrd "$WORK/initramfs.cpio.gz" -append "console=hvc0 quiet $append" \
    "${GPU0[@]}"
}
# What the guest said after "GUEST: KEY" (the console adds carriage returns).
guest_says() { tr -d '\r' <"$WORK/$2.err" | sed -n "s/^.*GUEST: $1 *//p" | head -n 1; }

note "run 1: default HMI policy (fatal), links trained before any touch"
boot trained "" || fail "QEMU or the guest failed (status $?)"
expect_eq "$(grep -ac 'GUEST: pci 0x10de:0x1db1' "$WORK/trained.err")" 1 "GPUs the guest sees"
expect_eq "$(grep -ac 'GUEST: pci 0x1014:0x04ea' "$WORK/trained.err")" 2 "NVLink2 bridges the guest sees"
expect_eq "$(guest_says gpu-ram-node trained)" "ibm,coherent-device-memory" "GPU RAM node compatible"
expect_grep "GUEST: numa-node1 present" "$WORK/trained.err"
expect_eq "$(guest_says 'procedures completed' trained)" 8 "link procedures completed (4 per bridge)"
expect_eq "$(guest_says 'gpu-ram read-back' trained)" 0x1122334455667788 "GPU RAM read-back"
expect_grep "GUEST: onlined memory" "$WORK/trained.err"
expect_eq "$(guest_says node1-memory trained)" "16384 kB" "node1 memory after onlining one block"
expect_grep "GUEST: done" "$WORK/trained.err"
expect_eq "$(jq -r '.hmis | length' "$WORK/trained.json")" 0 "HMIs"
expect_eq "$(jq -r '[.links[] | select(.gpu == "0004:04:00.0" and .state == "trained")] | length' "$WORK/trained.json")" 2 \
  "trained links of 0004:04:00.0"

note "run 2: policy log, GPU RAM read before training"
boot early "nv2pt.early_touch" --hmi log || fail "QEMU or the guest failed (status $?)"
expect_eq "$(guest_says 'early read' early)" 0x0000000000000000 "the early read (zeros, logged)"
expect_eq "$(guest_says 'gpu-ram read-back' early)" 0x1122334455667788 "GPU RAM read-back after training"
expect_eq "$(jq -r '.hmis | length' "$WORK/early.json")" 1 "HMIs"
expect_eq "$(jq -r '.hmis[0].cause' "$WORK/early.json")" untrained-link "HMI cause"
expect_eq "$(jq -r '.hmis[0].hpa' "$WORK/early.json")" "$(jq -r '.gpu_ram[0].window_base' "$WORK/early.json")" \
  "HMI address (the window base)"
echo PASS
