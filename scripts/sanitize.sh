#!/usr/bin/env bash
# The test suites under the sanitizers, with clang 14 (scripts/test.sh runs it after the normal build):
#   asan  ASan+UBSan build in build-asan: every suite but the e2e QEMU tests (QEMU is not instrumented) and benchmarks
#   tsan  TSan build in build-tsan: the suites with threads in them (mm, iommu, platform models, vfio, kvm, base)
#   fuzz  libFuzzer build in build-fuzz: the UAPI sequence fuzzer for NV2PT_FUZZ_SECONDS (default 60) from the seed
#         corpus fuzz/corpus/, regression inputs included (a long run on every core with coverage:
#         scripts/fuzz_campaign.sh)
# Usage: scripts/sanitize.sh [asan] [tsan] [fuzz]   (no argument: all three). Any sanitizer report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

export CC=clang-14 CXX=clang++-14
# abort_on_error: a report is a failure even where a test expects some other exit. handle_sigbus=0: SIGBUS is a
# designed outcome here (HMI with the fatal policy, BAR access with memory decode off) and tests check for it.
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:handle_sigbus=0:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:handle_sigbus=0
tsan_targets=(base_test mm_test iommu_test platform_models_test vfio_test kvm_test)
skip=(-LE 'e2e|bench' -E '^e2e\.')  # no QEMU runs, no benchmarks (timings mean nothing there)

phase() {  # phase <name> <command...>: runs it and prints how long it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "sanitize: $name took $((SECONDS - start)) s"
}

asan() {
  phase "asan configure+build" bash -c 'cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNV2PT_SANITIZE=address >/dev/null &&
    cmake --build build-asan -j2'
  phase "asan tests" ctest --test-dir build-asan --output-on-failure -j2 --timeout 900 "${skip[@]}"
}

tsan() {
  phase "tsan configure+build" bash -c 'cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNV2PT_SANITIZE=thread >/dev/null &&
    cmake --build build-tsan -j2 --target '"${tsan_targets[*]}"
  # Only the suites built above: a test binary that was not built shows up as <target>_NOT_BUILT.
  phase "tsan tests" ctest --test-dir build-tsan --output-on-failure -j2 --timeout 900 -LE 'e2e|bench' -E "^e2e\.|_NOT_BUILT$"
}

fuzz() {
  local seconds=${NV2PT_FUZZ_SECONDS:-60}
  phase "fuzz configure+build" bash -c 'cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNV2PT_FUZZ=ON >/dev/null &&
    cmake --build build-fuzz -j2 --target uapi_sequence_fuzzer'
  local work rc=0
  work=$(mktemp -d)
  cp fuzz/corpus/* "$work"/
  # -error_exitcode/-timeout_exitcode make a crash, a leak or a hang fail the script; the reproducer lands in
  # build-fuzz/ (crash-*, leak-*, timeout-*).
  phase "fuzz run (${seconds} s)" build-fuzz/bin/uapi_sequence_fuzzer -max_total_time="$seconds" -entropic=0 -timeout=30 \
    -rss_limit_mb=4096 -error_exitcode=77 -timeout_exitcode=78 -print_final_stats=1 -artifact_prefix=build-fuzz/ \
    "$work" >build-fuzz/fuzz.log 2>&1 || rc=$?
  tail -25 build-fuzz/fuzz.log
  rm -rf "$work"
  return "$rc"
}

phases=("$@")
((${#phases[@]})) || phases=(asan tsan fuzz)
for p in "${phases[@]}"; do
  "$p"
done
