#!/usr/bin/env bash
# A long run of the UAPI sequence fuzzer on every core, then line coverage of mm/ iommu/ vfio/ kvm/ from replaying
# the corpus it grew (docs/reliability.md).
#
# Usage: scripts/fuzz_campaign.sh [EXECUTIONS]      (default 10000000, split evenly over the workers)
#   NV2PT_FUZZ_WORKERS  parallel fuzzer processes (default: nproc), each at nice 10 with its own seed
#   NV2PT_FUZZ_SECONDS  run this long instead of counting executions
#   NV2PT_FUZZ_MAX_LEN  longest input in bytes (libFuzzer's -max_len; default: the longest corpus input). An input
#                       costs about its length: 256 bytes still reach registered memory, windows, GPU-RAM mappings
#                       and KVM tables, at 2-3 times the executions per second (docs/reliability.md, Speed)
#   NV2PT_FUZZ_DIR      where everything goes (default build-fuzz/campaign): corpus/ (kept between campaigns,
#                       seeded from fuzz/corpus/), worker-N.log, crash-*/leak-*/timeout-*/oom-* reproducers,
#                       coverage.txt
# Builds: build-fuzz (libFuzzer, ASan+UBSan) and build-cov (source-based coverage, no sanitizers), clang 14.
# Exit status 1 if any worker found something (its reproducer is named in the output).
set -euo pipefail
cd "$(dirname "$0")/.."

executions=${1:-10000000}
workers=${NV2PT_FUZZ_WORKERS:-$(nproc)}
dir=${NV2PT_FUZZ_DIR:-build-fuzz/campaign}
export CC=clang-14 CXX=clang++-14
export ASAN_OPTIONS=handle_sigbus=0:abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNV2PT_FUZZ=ON "${launcher[@]}" >/dev/null
nice cmake --build build-fuzz -j"$workers" --target uapi_sequence_fuzzer
cmake -S . -B build-cov -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNV2PT_COVERAGE=ON "${launcher[@]}" >/dev/null
nice cmake --build build-cov -j"$workers" --target uapi_sequence_replay

mkdir -p "$dir/corpus"
cp -n fuzz/corpus/* "$dir/corpus/"
rm -f "$dir"/worker-*.log

max_len=()
[[ -n ${NV2PT_FUZZ_MAX_LEN:-} ]] && max_len=(-max_len="$NV2PT_FUZZ_MAX_LEN")
if [[ -n ${NV2PT_FUZZ_SECONDS:-} ]]; then
  limit=(-max_total_time="$NV2PT_FUZZ_SECONDS")
  echo "campaign: $workers workers for $NV2PT_FUZZ_SECONDS s"
else
  limit=(-runs=$(((executions + workers - 1) / workers)))
  echo "campaign: $workers workers, $executions executions"
fi
start=$SECONDS
pids=()
for ((i = 0; i < workers; i++)); do
  # Every worker reads the shared corpus and adds what it finds to it (libFuzzer reloads it now and then).
  # -entropic=0: entropic's feature bookkeeping was a fifth of the CPU time (docs/reliability.md, Speed).
  # -rss_limit_mb: one host serves every input and must not grow with them; a worker stays under 200 MB.
  nice -n 10 build-fuzz/bin/uapi_sequence_fuzzer "${limit[@]}" "${max_len[@]}" -seed=$((i + 1 + RANDOM)) -entropic=0 -timeout=30 \
    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$dir/" "$dir/corpus" >"$dir/worker-$i.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    failed=1
    echo "campaign: worker $i stopped on a finding:"
    grep -E "ERROR|SUMMARY|nv2pt fuzz|Test unit written" "$dir/worker-$i.log" | head -8
  fi
done
elapsed=$((SECONDS - start))
total=$(cat "$dir"/worker-*.log | sed -n 's/^stat::number_of_executed_units: //p' | awk '{s += $1} END {print s + 0}')
echo "campaign: $total executions in $elapsed s ($((total / (elapsed > 0 ? elapsed : 1))) exec/s on $workers workers)," \
  "corpus $(ls "$dir/corpus" | wc -l) inputs"

# Coverage: the uninstrumented-by-sanitizers replay of the whole corpus, one profile per process.
rm -f "$dir"/*.profraw
LLVM_PROFILE_FILE="$dir/replay-%p.profraw" build-cov/bin/uapi_sequence_replay "$dir/corpus"
llvm-profdata-14 merge -sparse "$dir"/replay-*.profraw -o "$dir/replay.profdata"
# Lines per folder, by llvm-cov's line rule corrected for the gap clang leaves after every NV2PT_TRY
# (scripts/line_coverage.py says how); llvm-cov's own figure is printed beside it.
llvm-cov-14 export build-cov/bin/uapi_sequence_replay -instr-profile="$dir/replay.profdata" \
  -ignore-filename-regex='_test\.(cc|h)$' | python3 scripts/line_coverage.py mm iommu vfio kvm | tee "$dir/coverage.txt"
echo "campaign: per-file report: llvm-cov-14 report build-cov/bin/uapi_sequence_replay -instr-profile=$dir/replay.profdata"
exit "$failed"
