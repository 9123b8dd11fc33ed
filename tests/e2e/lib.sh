# Shared by the end-to-end tests: unmodified QEMU 7.2 (qemu-system-ppc64, TCG) run under `nv2pt run`.
# CTest passes NV2PT, NV2PT_PRELOAD, MAKE_TCETEST_ELF, E2E_TOPOLOGIES and QEMU; exit 77 means skipped.
set -euo pipefail

: "${NV2PT:?}" "${NV2PT_PRELOAD:?}" "${QEMU:=qemu-system-ppc64}"
export NV2PT_PRELOAD

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

[ -z "${E2E_SKIP:-}" ] || skip "$E2E_SKIP"
command -v "$QEMU" >/dev/null || skip "$QEMU not installed (scripts/setup.sh installs qemu-system-ppc)"
command -v fdtget >/dev/null || skip "fdtget not installed (device-tree-compiler)"
command -v jq >/dev/null || skip "jq not installed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nv2pt-e2e.XXXXXX")
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    for f in "$WORK"/*.err "$WORK"/*.log; do
      [ -f "$f" ] && { echo "=== $f"; tail -n 40 "$f"; }
    done
    # What the device DMA requests answered, when the test made any.
    if [ -f "${NV2PT_DMA_REQUESTS:-}.json" ]; then
      echo "=== $NV2PT_DMA_REQUESTS.json"
      jq -c '.[]' "$NV2PT_DMA_REQUESTS.json"
    fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# Every test owns its group lock files: CTest runs tests in parallel, all of them on group 4.
export NV2PT_RUNTIME_DIR="$WORK/run"

# The QEMU machine of every test: TCG, small RAM (pinning guest RAM is the slow part), no default devices.
QEMU_MACHINE=(-M pseries,accel=tcg -m 256M -nographic -nodefaults)
# GPU 0004:04:00.0 and its two NVLink2 bridges (IOMMU group 4), on the default PHB or on vPHB <index>.
gpu_devices() {
  local gpu=$1 bridge0=$2 bridge1=$3 bus=${4:-pci.0} first=${5:-1}
  echo "-device vfio-pci,host=$gpu,bus=$bus,addr=$first.0" \
       "-device vfio-pci,host=$bridge0,bus=$bus,addr=$((first + 1)).0" \
       "-device vfio-pci,host=$bridge1,bus=$bus,addr=$((first + 2)).0"
}
GPU0=($(gpu_devices 0004:04:00.0 0006:00:00.0 0006:00:00.1))

# nv2pt_run NAME [nv2pt run options...] -- qemu args...: runs with a report and an event log under $WORK,
# stdout+stderr in $WORK/NAME.err; returns QEMU's status.
nv2pt_run() {
  local name=$1
  shift
  local rc=0
  "$NV2PT" run --report "$WORK/$name.json" --log "$WORK/$name.log" "$@" >"$WORK/$name.err" 2>&1 || rc=$?
  return $rc
}

expect_eq() { [ "$1" = "$2" ] || fail "$3: expected '$2', got '$1'"; }
expect_grep() { grep -q -- "$1" "$2" || fail "'$1' not found in $2"; }
expect_no_grep() { ! grep -q -- "$1" "$2" || fail "'$1' unexpectedly found in $2"; }

# prop DTB NODE PROP: the property as hex cells ("4000 0 20 0").
prop() { fdtget -t x "$1" "$2" "$3" 2>/dev/null || echo "<missing>"; }
# (grep without -q: an early exit would SIGPIPE fdtget, which pipefail turns into a failure)
has_node() { fdtget -l "$1" "$(dirname "$2")" 2>/dev/null | grep -x "$(basename "$2")" >/dev/null; }
# Every node of a DTB, one path per line.
all_nodes() {
  local dtb=$1 node=${2:-/}
  echo "$node"
  local child
  for child in $(fdtget -l "$dtb" "$node" 2>/dev/null); do
    all_nodes "$dtb" "${node%/}/$child"
  done
}
# Nodes with the given vendor-id and device-id (hex without 0x), in tree order.
pci_nodes() {
  local dtb=$1 vendor=$2 device=$3 n
  for n in $(all_nodes "$dtb"); do
    [ "$(prop "$dtb" "$n" vendor-id)" = "$vendor" ] && [ "$(prop "$dtb" "$n" device-id)" = "$device" ] && echo "$n"
  done
  return 0
}
# Any node carrying PROP?
any_prop() {
  local dtb=$1 p=$2 n
  for n in $(all_nodes "$dtb"); do
    fdtget "$dtb" "$n" "$p" >/dev/null 2>&1 && return 0
  done
  return 1
}
# u64 from two hex cells: "400 0" -> 0x40000000000
u64() { printf '0x%x' $(( (0x$1 << 32) | 0x$2 )); }

# --- QEMU kept running, driven through QMP on its stdin/stdout (a bash coprocess; no extra tool needed) ---
QMP_MACHINE=(-M pseries,accel=tcg -m 256M -display none -nodefaults -S -qmp stdio)

# qmp_start NAME [nv2pt run options] -- qemu args: QEMU under nv2pt run, report/log/stderr under $WORK/NAME.*
qmp_start() {
  local name=$1
  shift
  coproc QMP { exec "$NV2PT" run --report "$WORK/$name.json" --log "$WORK/$name.log" "$@" 2>"$WORK/$name.err"; }
  QMP_NV2PT_PID=$QMP_PID
  qmp '{"execute":"qmp_capabilities"}'
}

# qmp JSON: sends a command, waits for its reply (events and the greeting are skipped); the reply is in QMP_REPLY.
qmp() {
  echo "$1" >&"${QMP[1]}"
  local line
  while IFS= read -r -t 60 line <&"${QMP[0]}"; do
    case $line in *'"return"'* | *'"error"'*) QMP_REPLY=$line; return 0 ;; esac
  done
  fail "no QMP reply to $1"
}

# The QEMU process under nv2pt run (its only child).
qemu_pid() { cat "/proc/$QMP_NV2PT_PID/task/$QMP_NV2PT_PID/children" | awk '{print $1}'; }

# report_now NAME OUT: asks the running QEMU for a report (SIGUSR2) and copies it to OUT.
report_now() {
  local json=$WORK/$1.json
  rm -f "$json"
  kill -USR2 "$(qemu_pid)"
  for _ in $(seq 100); do
    [ -s "$json" ] && { cp "$json" "$2"; return 0; }
    sleep 0.1
  done
  fail "no report after SIGUSR2"
}

qmp_quit() {
  qmp '{"execute":"quit"}'
  local rc=0
  wait "$QMP_NV2PT_PID" || rc=$?
  return $rc
}
