# A real ppc64le Linux guest (Debian bookworm's kernel, a busybox initramfs; scripts/fetch-guest.sh) booted by
# QEMU 7.2 with GPU 0004:04:00.0 and its two NVLink2 bridges passed through from the model, as
# ../shared/reference/guest-ppc64le.md saw it, and then driven the way the NVIDIA driver and nvidia-persistenced
# drive a real one:
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

# The guest's whole userland: /init, run by busybox. "nv2pt.early_touch" on the command line makes it read GPU RAM
# before training.
mkdir -p "$WORK/initramfs/bin" "$WORK/initramfs/proc" "$WORK/initramfs/sys" "$WORK/initramfs/dev"
cp "$GUEST_DIR/busybox" "$WORK/initramfs/bin/busybox"
cat >"$WORK/initramfs/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "GUEST: $*"; }
echo  # the console may be mid-line (kernel messages)
gpu_ram=0x400000000000
for d in /sys/bus/pci/devices/*; do say "pci $(cat $d/vendor):$(cat $d/device)"; done
say "gpu-ram-node $(cat /proc/device-tree/memory@400000000000/compatible)"
[ -d /sys/devices/system/node/node1 ] && say "numa-node1 present"
grep -q nv2pt.early_touch /proc/cmdline && say "early read $(devmem $gpu_ram 64)"
trained=0
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/device)" = 0x04ea ] || continue
  for p in 4 5 6 9; do
    printf "\\$(printf %03o $p)\\000\\000\\000" | dd of=$d/config bs=4 seek=$((0x88 / 4)) count=1 conv=notrunc 2>/dev/null
    n=0
    while :; do
      s=$(dd if=$d/config bs=4 skip=$((0x84 / 4)) count=1 2>/dev/null | od -An -tx4 | tr -d ' ')
      n=$((n + 1))
      [ $((0x$s & 0x40000000)) = 0 ] && [ $n -lt 1000 ] || break
    done
    [ $((0x$s & 0x4000000f)) = $((0x40000000)) ] && trained=$((trained + 1))
  done
done
say "procedures completed $trained"
devmem $((gpu_ram + 0x10000)) 64 0x1122334455667788
say "gpu-ram read-back $(devmem $((gpu_ram + 0x10000)) 64)"
echo $gpu_ram > /sys/devices/system/memory/probe && say "probed"
for b in /sys/devices/system/memory/memory*; do
  [ "$(cat $b/state)" = offline ] && echo online_movable > $b/state && say "onlined $(basename $b)"
done
say "node1-memory $(grep MemTotal /sys/devices/system/node/node1/meminfo | awk '{print $4, $5}')"
say "done"
echo o > /proc/sysrq-trigger
sleep 10
INIT
chmod +x "$WORK/initramfs/init"
(cd "$WORK/initramfs" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$WORK/initramfs.cpio.gz"

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
