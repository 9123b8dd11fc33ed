#!/usr/bin/env bash
# The README's test command: install the Debian packages, build, run every test; then the suites again under
# ASan+UBSan and TSan and the UAPI fuzzer for 60 s, with clang 14 (scripts/sanitize.sh; docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2 --timeout 600
bash scripts/sanitize.sh
