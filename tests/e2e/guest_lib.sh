# Shared by the e2e tests that boot the real ppc64le guest (after lib.sh): the layout from the topology, and a guest
# run in the background that the test watches and asks for reports.

# The guest's kernel and busybox (scripts/fetch-guest.sh, run by setup.sh); without them the test is skipped.
GUEST_DIR=${NV2PT_GUEST_DIR:-$HOME/.cache/nv2pt/guest}
[ -s "$GUEST_DIR/vmlinux" ] && [ -s "$GUEST_DIR/busybox" ] ||
  skip "no guest kernel in $GUEST_DIR (scripts/fetch-guest.sh fetches it; scripts/setup.sh runs it)"
command -v cpio >/dev/null || skip "cpio not installed"

# guest_initramfs_with_module: $WORK/initramfs.cpio.gz with the nv2pt_dma module (scripts/build-guest-module.sh).
guest_initramfs_with_module() {
  [ -s "$GUEST_DIR/nv2pt_dma.ko" ] ||
    skip "no guest module in $GUEST_DIR (scripts/build-guest-module.sh; setup.sh runs it)"
  "$(dirname "$0")/../../scripts/make-initramfs.sh" "$GUEST_DIR/busybox" "$WORK/initramfs.cpio.gz" \
    "$GUEST_DIR/nv2pt_dma.ko"
}

# The topology: the test script's first argument (a .dts/.dtb path), else the embedded default.
# topology_layout [N]: the Nth GPU (0-based) of that topology, from `nv2pt lspci -v`. Sets GPU, GROUP, BRIDGES (array), GPU_RAM_HPA and
# GPU_RAM_WINDOW (the host window's base and size: what the GPU-RAM region exposes), GPU_RAM_REAL (bytes of real
# GPU RAM) and TOPOLOGY_ARG (the --topology option, or nothing).
TOPOLOGY_ARG=()
[ -z "${1:-}" ] || TOPOLOGY_ARG=(--topology "$1")
topology_layout() {
  local n=${1:-0} lspci
  lspci=$("$NV2PT" ${TOPOLOGY_ARG[@]+"${TOPOLOGY_ARG[@]}"} lspci -v)
  read -r GROUP GPU < <(awk '/^[0-9]+ .* 3D: / {print $1, $2}' <<<"$lspci" | sed -n "$((n + 1))p")
  [ -n "$GPU" ] || fail "the topology has no GPU #$n"
  local block
  block=$(awk -v g="$GPU" '$2 == g {f = 1; next} /^[0-9]/ {f = 0} f' <<<"$lspci")
  GPU_RAM_HPA=$(sed -n 's/.*GPU RAM window: base \(0x[0-9a-f]*\),.*/\1/p' <<<"$block")
  GPU_RAM_WINDOW=$(sed -n 's/.*GPU RAM window: base .*, size \([0-9]*\) GiB.*/\1/p' <<<"$block")
  GPU_RAM_WINDOW=$((GPU_RAM_WINDOW << 30))
  GPU_RAM_REAL=$(sed -n 's/.*GPU RAM real size: \([0-9]*\) GiB.*/\1/p' <<<"$block")
  GPU_RAM_REAL=$((GPU_RAM_REAL << 30))
  read -r -a BRIDGES < <(sed -n 's/.*NVLink bridges: //p' <<<"$block" | tr -d ',')
  [ ${#BRIDGES[@]} -gt 0 ] || fail "GPU $GPU has no NVLink bridges in the topology"
}

# vfio_devices GPU BUS FIRST_SLOT BRIDGE...: -device options for a GPU and its bridges on consecutive slots.
vfio_devices() {
  local gpu=$1 bus=$2 slot=$3 b
  shift 3
  echo "-device vfio-pci,host=$gpu,bus=$bus,addr=$slot.0"
  for b in "$@"; do
    slot=$((slot + 1))
    echo "-device vfio-pci,host=$b,bus=$bus,addr=$slot.0"
  done
}

# guest_start NAME APPEND -- QEMU_ARGS...: boots the guest under nv2pt run in the background (report, event log and
# console under $WORK/NAME.*). The initramfs is $WORK/initramfs.cpio.gz.
guest_start() {
  local name=$1 append=$2
  shift 3
  "$NV2PT" ${TOPOLOGY_ARG[@]+"${TOPOLOGY_ARG[@]}"} run --report "$WORK/$name.json" --log "$WORK/$name.log" -- \
    "$QEMU" -M pseries,accel=tcg -cpu POWER9 -nographic -nodefaults -serial mon:stdio -kernel "$GUEST_DIR/vmlinux" \
    -initrd "$WORK/initramfs.cpio.gz" -append "console=hvc0 quiet $append" "$@" </dev/null >"$WORK/$name.err" 2>&1 &
  GUEST_PID=$!
}

# guest_wait_for NAME TEXT SECONDS: until the console shows TEXT; fails if the guest ends or time runs out.
guest_wait_for() {
  local name=$1 text=$2 i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -s -a -q -- "$text" "$WORK/$name.err" && return 0
    kill -0 "$GUEST_PID" 2>/dev/null || fail "the guest ended before '$text'"
    sleep 0.1
  done
  fail "no '$text' from the guest after $3 s"
}

# guest_dma: runs the DMA requests of $NV2PT_DMA_REQUESTS now (the report signal to QEMU, nv2pt run's child) and
# waits for their results, $NV2PT_DMA_REQUESTS.json.
guest_dma() {
  local out=$NV2PT_DMA_REQUESTS.json qemu i
  rm -f "$out"
  qemu=$(awk '{print $1}' "/proc/$GUEST_PID/task/$GUEST_PID/children")
  kill -USR2 "$qemu"
  for ((i = 0; i < 300; i++)); do
    [ -s "$out" ] && return 0
    sleep 0.1
  done
  fail "no DMA results after SIGUSR2"
}

# guest_stop: waits for nv2pt run to end; returns its status.
guest_stop() { local rc=0; wait "$GUEST_PID" || rc=$?; return $rc; }

# guest_says KEY NAME: every value the guest printed after "GUEST: KEY" (the console adds carriage returns).
guest_says() { tr -d '\r' <"$WORK/$2.err" | sed -n "s/^.*GUEST: $1 *//p"; }

# guest_bdf NAME N: the guest's PCI address of its Nth GPU (0-based).
guest_bdf() { guest_says "pci 0x10de:0x1db[15]" "$1" | sed -n "$(($2 + 1))p" | awk '{print $1}'; }
