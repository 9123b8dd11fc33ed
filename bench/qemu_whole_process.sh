#!/usr/bin/env bash
# Figure 5: the whole process. Debian's unmodified QEMU 7.2 (TCG) dumping its device tree with all 6 GPUs and 12
# NVLink2 bridges under `nv2pt run` (one vPHB per IOMMU group: docs/qemu-7.2.md#one-vphb-per-group), against
#   plain: the same QEMU with no devices (the issue's reference);
#   own:   what QEMU itself spends on this configuration, without VFIO: the six vPHBs, the guest RAM resident (under
#          nv2pt REGISTER_MEMORY pins it, i.e. touches every page, as the kernel does), and RAM blocks of the sizes
#          the devices hand QEMU to map (six GPU RAM regions and six 16 GiB BAR1s), never touched. QEMU keeps three
#          dirty bitmaps over all its RAM blocks, filled at creation: 13.5 MiB per GPU (12 for its 128 GiB RAM region, 1.5 for BAR1), 81 MiB
#          for the six, QEMU's memory whoever serves the region.
# Wall time and peak RSS (GNU time's %M: the larger of nv2pt and its QEMU child) per run, the median of --runs runs
# of each, alternated so that load on the machine hits all alike. "RSS of the model" is nv2pt's peak minus own's.
# Where perf works, one more nv2pt run is sampled: the share of its CPU samples in libnv2pt_preload.so (the whole
# model lives there) is the model's own CPU time, apart from QEMU's VFIO code and the kernel's work for it.
#
# usage: qemu_whole_process.sh --nv2pt BIN [--runs N] [--work DIR]
# Prints "key value" lines (seconds, KiB) for bench/run.sh; exit 77 if QEMU or GNU time is missing.
set -euo pipefail

NV2PT="" RUNS=3 WORK=""
while (($#)); do
  case $1 in
    --nv2pt) NV2PT=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    *) echo "usage: $0 --nv2pt BIN [--runs N] [--work DIR]" >&2; exit 2 ;;
  esac
done
QEMU=${QEMU:-qemu-system-ppc64}
[ -x "$NV2PT" ] || { echo "qemu_whole_process: --nv2pt BIN is required" >&2; exit 2; }
command -v "$QEMU" >/dev/null || { echo "SKIP: $QEMU not installed"; exit 77; }
[ -x /usr/bin/time ] || { echo "SKIP: GNU time (/usr/bin/time) not installed"; exit 77; }
if [ -z "$WORK" ]; then
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/nv2pt-bench.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK"
export NV2PT_RUNTIME_DIR="$WORK/run"  # our own group locks: another nv2pt run elsewhere cannot make us EBUSY

machine=(-M pseries,accel=tcg -m 256M -nographic -nodefaults)
# The topology's GPUs, one vPHB each (index from 1), with their bridges and GPU RAM region sizes (the region is the
# GPU's whole window: docs/kernel/regions.md#gpu-ram-init), as `nv2pt lspci -v` shows them: "index gpu bridge0 bridge1".
lspci=$("$NV2PT" lspci -v)
mapfile -t layout < <(awk '/^[0-9]+ [0-9a-f:.]+ 3D:/ {gpu = $2}
                           /^\tNVLink bridges:/ {gsub(",", ""); print ++i, gpu, $3, $4}' <<<"$lspci")
mapfile -t windows < <(sed -n 's/^\tGPU RAM window: .*, size \([0-9]*\) GiB$/\1/p' <<<"$lspci")
if [ "${#layout[@]}" != 6 ] || [ "${#windows[@]}" != 6 ]; then
  echo "qemu_whole_process: nv2pt lspci -v shows ${#layout[@]} GPUs with bridges and ${#windows[@]} windows, not 6" >&2
  exit 1
fi
own=(-M memory-backend=ram -object memory-backend-ram,id=ram,size=256M,prealloc=on)
for i in "${!windows[@]}"; do
  own+=(-object "memory-backend-ram,id=gpuram$i,size=${windows[$i]}G,reserve=off")
  own+=(-object "memory-backend-ram,id=bar1_$i,size=16G,reserve=off")  # the GV100 model's BAR1
done
devices=()
for entry in "${layout[@]}"; do
  set -- $entry
  own+=(-device "spapr-pci-host-bridge,id=phb$1,index=$1")
  devices+=(-device "spapr-pci-host-bridge,id=phb$1,index=$1")
  devices+=(-device "vfio-pci,host=$2,bus=phb$1.0,addr=0.0")
  devices+=(-device "vfio-pci,host=$3,bus=phb$1.0,addr=1.0")
  devices+=(-device "vfio-pci,host=$4,bus=phb$1.0,addr=2.0")
done

# measure NAME CMD...: appends "wall-seconds peak-kib cpu-seconds" to $WORK/NAME.times; the command's output goes to $WORK/NAME.err.
measure() {
  local name=$1
  shift
  /usr/bin/time -f "%e %M %U+%S" -o "$WORK/$name.one" "$@" >"$WORK/$name.err" 2>&1 || {
    echo "qemu_whole_process: $name failed:" >&2
    tail -n 20 "$WORK/$name.err" >&2
    exit 1
  }
  awk '{split($3, t, "+"); print $1, $2, t[1] + t[2]}' "$WORK/$name.one" >>"$WORK/$name.times"
}

rm -f "$WORK"/*.times
for ((i = 0; i < RUNS; ++i)); do
  measure plain "$QEMU" "${machine[@]}" -machine dumpdtb="$WORK/plain.dtb"
  measure own "$QEMU" "${machine[@]}" "${own[@]}" -machine dumpdtb="$WORK/own.dtb"
  measure nv2pt "$NV2PT" run --report "$WORK/report.json" -- "$QEMU" "${machine[@]}" "${devices[@]}" \
    -machine dumpdtb="$WORK/six.dtb"
done

# The model's own share of the CPU, if perf can sample this process.
if command -v perf >/dev/null &&
  perf record -q -F 4999 -o "$WORK/perf.data" -- "$NV2PT" run -- "$QEMU" "${machine[@]}" "${devices[@]}" \
    -machine dumpdtb="$WORK/perf.dtb" >"$WORK/perf.err" 2>&1; then
  share=$(perf report -i "$WORK/perf.data" --sort dso --stdio -q 2>/dev/null |
    awk '$2 == "libnv2pt_preload.so" {sub("%", "", $1); print $1}')
  [ -z "$share" ] || echo "model_cpu_share_pct $share"
fi

# The dump must hold what QEMU was asked for: 6 GPUs and 12 bridges.
dts=$(dtc -q -I dtb -O dts "$WORK/six.dtb")
gpus=$(grep -cE '^\s*vendor-id = <0x10de>' <<<"$dts" || true)
bridges=$(grep -cE '^\s*vendor-id = <0x1014>' <<<"$dts" || true)
if [ "$gpus" != 6 ] || [ "$bridges" != 12 ]; then
  echo "qemu_whole_process: the device tree has $gpus GPUs and $bridges bridges, not 6 and 12" >&2
  exit 1
fi

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for name in plain own nv2pt; do
  echo "wall_${name}_s $(awk '{print $1}' "$WORK/$name.times" | median)"
  echo "cpu_${name}_s $(awk '{print $3}' "$WORK/$name.times" | median)"
  echo "rss_${name}_kib $(awk '{print $2}' "$WORK/$name.times" | median)"
done
echo "dt_gpus $gpus"
echo "dt_bridges $bridges"
echo "runs $RUNS"
