#!/usr/bin/env bash
# The one command for every figure of docs/benchmarks.md: runs the benchmark binaries (the C++ API suite, and the
# preload client under LD_PRELOAD) and the whole-process QEMU script, then prints each figure beside its goal and
# its ratio to the reference measured in the same run.
#
# usage: bench/run.sh [--quick] [--build-dir DIR] [--out DIR]
#   --quick      every benchmark once and small (no 8 GiB registration, one QEMU run): CI checks that it all runs
#   --build-dir  a Release build (default build-bench; configured and built here if it has no binaries)
#   --out        keep the raw outputs (JSON, QEMU timings) there instead of a temporary directory
# Exit status 0 when everything ran, whatever the figures; 1 if a benchmark failed to run.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0 BUILD=build-bench OUT=""
while (($#)); do
  case $1 in
    --quick) QUICK=1; shift ;;
    --build-dir) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
  esac
done
command -v jq >/dev/null || { echo "run.sh: jq is needed (scripts/setup.sh installs it)" >&2; exit 1; }
if [ ! -x "$BUILD/bin/nv2pt_bench" ] || [ ! -x "$BUILD/bin/nv2pt_preload_bench" ]; then
  echo "--- building $BUILD (Release)"
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2 --target nv2pt_bench nv2pt_preload_bench nv2pt nv2pt_preload >/dev/null
fi
if [ -z "$OUT" ]; then
  OUT=$(mktemp -d "${TMPDIR:-/tmp}/nv2pt-bench.XXXXXX")
  trap 'rm -rf "$OUT"' EXIT
fi
mkdir -p "$OUT"
PRELOAD=$BUILD/lib/libnv2pt_preload.so

if ((QUICK)); then
  bench_args=(--benchmark_min_time=0.01)
  api_filter='-(/8$|Cold)'
  qemu_runs=1
else
  bench_args=(--benchmark_min_time=1 --benchmark_repetitions=1)
  api_filter='.'
  qemu_runs=5
fi

echo "--- preload client (figures 1, 2 through the interposer)"
NV2PT_RUNTIME_DIR="$OUT/run" LD_PRELOAD="$PRELOAD" "$BUILD/bin/nv2pt_preload_bench" "${bench_args[@]}" \
  --benchmark_out="$OUT/preload.json" --benchmark_out_format=json >"$OUT/preload.txt" 2>&1 ||
  { cat "$OUT/preload.txt"; exit 1; }
echo "--- C++ API suite (figures 2, 3, 4, 6)"
"$BUILD/bin/nv2pt_bench" "${bench_args[@]}" --benchmark_filter="$api_filter" \
  --benchmark_out="$OUT/api.json" --benchmark_out_format=json >"$OUT/api.txt" 2>&1 ||
  { cat "$OUT/api.txt"; exit 1; }
echo "--- QEMU 7.2 whole process (figure 5), $qemu_runs run(s) each"
qemu_rc=0
bash bench/qemu_whole_process.sh --nv2pt "$BUILD/bin/nv2pt" --runs "$qemu_runs" --work "$OUT/qemu" \
  >"$OUT/qemu.txt" 2>"$OUT/qemu.err" || qemu_rc=$?
if ((qemu_rc != 0 && qemu_rc != 77)); then cat "$OUT/qemu.err"; exit 1; fi

# --- extraction ---
failed=$(jq -r '[.benchmarks[] | select(.error_occurred == true) | "\(.name): \(.error_message)"] | .[]' \
  "$OUT/preload.json" "$OUT/api.json")
# v FILE NAME FIELD: a field of one benchmark ("" if absent or failed).
v() {
  jq -r --arg n "$2" --arg f "$3" \
    '.benchmarks[] | select(.name == $n and (.error_occurred | not)) | .[$f] // empty' "$1" | head -n 1
}
# ns per TCE of a MAP/UNMAP benchmark (real_time in µs over the tces counter).
per_tce() {
  local t n
  t=$(v "$1" "$2" real_time)
  n=$(v "$1" "$2" tces)
  [ -n "$t" ] && [ -n "$n" ] && awk -v t="$t" -v n="$n" 'BEGIN {printf "%.2f", t * 1000 / n}'
}
q() { [ -f "$OUT/qemu.txt" ] && awk -v k="$1" '$1 == k {print $2}' "$OUT/qemu.txt"; }
calc() { awk "BEGIN {printf \"$1\", $2}" 2>/dev/null; }
# row FIGURE MEASURED REFERENCE RATIO GOAL MET
rows=()
row() { rows+=("$1|$2|$3|$4|$5|$6"); }
met() { [ -n "$1" ] && awk "BEGIN {exit !($1)}" && echo yes || echo "NO"; }

# 1. ioctl dispatch
real_ns=$(v "$OUT/preload.json" BM_RealIoctl real_time)
ip_ns=$(v "$OUT/preload.json" BM_InterposedCheckExtension real_time)
if [ -n "$ip_ns" ]; then
  r=$(calc "%.3f" "$ip_ns / $real_ns")
  row "1 ioctl dispatch, interposed CHECK_EXTENSION" "$(calc %.1f "$ip_ns") ns" "real ioctl $(calc %.0f "$real_ns") ns" \
    "1/$(calc %.1f "$real_ns / $ip_ns")" "<= 1/20" "$(met "$r <= 0.05")"
else
  row "1 ioctl dispatch" "not run (preload)" "real ioctl $(calc %.0f "$real_ns") ns" "-" "<= 1/20" "-"
fi

# 2. MAP/UNMAP 1 GiB, 2-level table
for shift in 16 12; do
  page=$([ $shift = 16 ] && echo 64K || echo 4K)
  floor=$(per_tce "$OUT/api.json" "BM_WriteFloor/$shift/manual_time")
  for op in Map Unmap; do
    ns=$(per_tce "$OUT/api.json" "BM_${op}Dma/$shift/manual_time")
    kern=$(per_tce "$OUT/api.json" "BM_Kernel${op}/$shift/manual_time")
    [ -n "$ns" ] || { row "2 ${op^^} 1 GiB $page" "failed" "-" "-" "-" "-"; continue; }
    row "2 ${op^^}_DMA 1 GiB, $page pages, C++ API" "$ns ns/TCE" "floor $floor ns, kernel alg. $kern ns" \
      "$(calc %.1f "$ns / $floor")x floor, $(calc %.2f "$ns / $kern")x kernel" "<= 20 ns, <= 10x floor" \
      "$(met "$ns <= 20 && $ns / $floor <= 10")"
    ipns=$(per_tce "$OUT/preload.json" "BM_Interposed${op}Dma/$shift/manual_time")
    [ -n "$ipns" ] && row "2 ${op^^}_DMA 1 GiB, $page pages, interposer" "$ipns ns/TCE" "floor $floor ns" \
      "$(calc %.1f "$ipns / $floor")x floor" "<= 20 ns, <= 10x floor" "$(met "$ipns <= 20 && $ipns / $floor <= 10")"
  done
done

# 3. REGISTER_MEMORY: the goal on CPU time (exact, blind to preemption by other work); wall time beside it.
gib=$( ((QUICK)) && echo 1 || echo 8)
for kind in Resident Cold; do
  if [ $kind = Resident ]; then name="BM_RegisterResident/$gib/iterations:6/manual_time" size=$gib; else
    name="BM_RegisterCold/1/iterations:4/manual_time" size=1; fi
  beyond=$(v "$OUT/api.json" "$name" beyond_cpu_ms_per_gib)
  if [ -z "$beyond" ]; then
    [ $kind = Resident ] && row "3 REGISTER_MEMORY $size GiB" "failed" "-" "-" "<= 1.5 ms/GiB" "NO"
    continue
  fi
  f() { calc "$1" "$(v "$OUT/api.json" "$name" "$2")"; }
  row "3 REGISTER_MEMORY $size GiB (${kind,,} pages)" \
    "$(f %.1f register_cpu_ms) ms CPU, $(f %.1f register_ms) ms wall" \
    "touch $(f %.1f touch_cpu_ms) ms CPU, $(f %.1f touch_ms) ms wall" \
    "$(calc %+.2f "$beyond") ms/GiB CPU ($(f %+.2f beyond_ms_per_gib) wall) beyond touch" \
    "<= 1.5 ms/GiB; locked exact" \
    "$( [ $kind = Resident ] && echo "$(met "$beyond <= 1.5"), accounting asserted" || echo "(cold: information)")"
done

# 4. GPU RAM first touch
g4="BM_GpuRamFirstTouch/4096/manual_time"
pps=$(v "$OUT/api.json" "$g4" pages_per_s)
shmem_pps=$(v "$OUT/api.json" "BM_ShmemTouchFloor/4096/manual_time" pages_per_s)
if [ -n "$pps" ] && [ -n "$shmem_pps" ]; then
  # The ratio: median over the passes of the kernel's own faults on a fresh memfd timed right next to each one.
  r=$(v "$OUT/api.json" "$g4" ratio_median)
  row "4 GPU RAM first touch, links trained" \
    "$(calc %.0f "$pps") pages/s, p50 $(calc %.1f "$(v "$OUT/api.json" "$g4" p50_ns) / 1000") us, p99 $(calc %.1f "$(v "$OUT/api.json" "$g4" p99_ns) / 1000") us" \
    "kernel shmem faults, same bytes: $(calc %.0f "$(v "$OUT/api.json" "$g4" reference_pages_per_s)") pages/s beside it, $(calc %.0f "$shmem_pps") alone" \
    "$(calc %.2f "$r")x kernel faults (median of pairs)" ">= 0.95x kernel faults" "$(met "$r >= 0.95")"
  sf=$(v "$OUT/api.json" "$g4" serviced_faults_trained)
  row "4 ... faults the service thread handled" "$(calc %.0f "$sf")" "-" "-" "0" "$(met "$sf == 0")"
  pd=$(v "$OUT/api.json" "$g4" premature_detected)
  row "4 ... premature touch (links untrained)" "$([ "$(calc %.0f "$pd")" = 1 ] && echo "HMI at the byte touched" || echo "not detected")" \
    "-" "-" "detected within one page" "$(met "$pd == 1")"
  ra=$(v "$OUT/api.json" "$g4" rearmed_pages)
  row "4 ... GPU reset, then one touch per page" "$(calc %.0f "$ra") HMIs" "4096 pages" "-" "every page re-armed" \
    "$(met "$ra == 4096")"
else
  row "4 GPU RAM first touch" "failed" "-" "-" ">= 0.95x kernel faults" "NO"
fi
huge_pps=$(v "$OUT/api.json" "BM_ShmemHugeAdviceTouch/4096/manual_time" pages_per_s)
if [ -n "$huge_pps" ] && [ -n "$shmem_pps" ]; then
  thp=/sys/kernel/mm/transparent_hugepage
  sel() { sed -n 's/.*\[\(.*\)\].*/\1/p' "$1" 2>/dev/null; }
  settings="shmem_enabled $(sel $thp/shmem_enabled), 64K $(sel $thp/hugepages-64kB/shmem_enabled), 2M $(sel $thp/hugepages-2048kB/shmem_enabled)"
  row "4 larger page: MADV_HUGEPAGE on the memfd" \
    "$(calc %.0f "$huge_pps") pages/s, $(calc %.0f "$(v "$OUT/api.json" "BM_ShmemHugeAdviceTouch/4096/manual_time" large_folios)") large folios" \
    "4 KiB kernel faults $(calc %.0f "$shmem_pps") pages/s; THP: $settings" "$(calc %.2f "$huge_pps / $shmem_pps")x" \
    "(information)" "-"
fi

# 5. QEMU whole process
if ((qemu_rc == 0)); then
  wp=$(q wall_plain_s) wo=$(q wall_own_s) wn=$(q wall_nv2pt_s)
  rp=$(q rss_plain_kib) ro=$(q rss_own_kib) rn=$(q rss_nv2pt_kib)
  row "5 QEMU 7.2 dumpdtb, 6 GPUs + 12 bridges, wall" "$wn s" \
    "QEMU's own for this configuration $wo s; no devices $wp s" \
    "$(calc %.2f "$wn / $wo")x own; $(calc %.2f "$wn / $wp")x no devices" "<= 1.2x" \
    "$(met "$wn / $wo <= 1.2") vs own; $(met "$wn / $wp <= 1.2") vs no devices"
  share=$(q model_cpu_share_pct) cn=$(q cpu_nv2pt_s)
  if [ -n "$share" ]; then
    row "5 ... the model's own CPU (perf: libnv2pt_preload.so)" "$(calc %.1f "$share * $cn * 10") ms ($share % of $cn s)" \
      "QEMU's own wall $wo s" "$(calc %.3f "1 + $share * $cn / 100 / $wo")x own" "<= 1.2x" \
      "$(met "1 + $share * $cn / 100 / $wo <= 1.2")"
  fi
  row "5 ... peak RSS of the model beyond QEMU's own" "$(calc %.0f "$rn / 1024") MiB" \
    "QEMU's own for this configuration $(calc %.0f "$ro / 1024") MiB; no devices $(calc %.0f "$rp / 1024") MiB" \
    "+$(calc %.1f "($rn - $ro) / 1024") MiB" "<= 64 MiB" "$(met "($rn - $ro) / 1024 <= 64")"
else
  row "5 QEMU 7.2 whole process" "skipped: $(head -n 1 "$OUT/qemu.txt" 2>/dev/null)" "-" "-" "<= 1.2x, <= 64 MiB" "-"
fi

# 6. TCE table memory
for arg in 0 1; do
  n="BM_TceTableMemorySeedLayout/$arg/iterations:1"
  alloc=$(v "$OUT/api.json" "$n" allocated_bytes)
  [ -n "$alloc" ] || continue
  what=$([ $arg = 0 ] && echo "whole 128 GiB GPU windows" || echo "16 GiB real GPU RAM")
  min=$(v "$OUT/api.json" "$n" minimum_bytes)
  row "6 TCE table memory, seed layout ($what)" "$(calc %.2f "$alloc / 1048576") MiB" \
    "minimum $(calc %.2f "$min / 1048576") MiB; plan: flat $(calc %.0f "$(v "$OUT/api.json" "$n" plan_exact_flat_bytes) / 1048576") MiB, pow2 flat $(calc %.0f "$(v "$OUT/api.json" "$n" plan_pow2_flat_bytes) / 1048576") MiB" \
    "$(calc %+.2f "($alloc / $min - 1) * 100") % over minimum" "within 1 %" "$(met "$alloc <= $min * 1.01")"
done

echo
printf '%s\n' "${rows[@]}" | awk -F'|' '
  BEGIN { printf "%-50s | %-34s | %-58s | %-30s | %-24s | %s\n", "figure", "measured", "reference (same run)", "ratio", "goal", "met" }
  { printf "%-50s | %-34s | %-58s | %-30s | %-24s | %s\n", $1, $2, $3, $4, $5, $6 }'
if [ -n "$failed" ]; then
  echo
  echo "benchmarks that did not run:"
  echo "$failed"
fi
((QUICK)) && echo "(quick mode: too short for the figures to mean anything)"
exit 0
