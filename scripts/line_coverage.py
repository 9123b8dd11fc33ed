#!/usr/bin/env python3
"""Line coverage per folder from `llvm-cov export` JSON (read on stdin).

A line's count follows llvm-cov's own rule (LineCoverageStats): the largest count of the regions that start on
the line, else the count of the segment wrapping into it, with one correction. clang before 2025's fix
(llvm/llvm-project#130976, of issue #124296; clang 14 and 16 both do it) puts a gap region of count 0 after a
statement expression that can return: every line right after an NV2PT_TRY then reads 0 when the code on it ran,
because its region only continues there. Such a line counts
here with the count its code ran. Both figures are printed.

Usage: llvm-cov-14 export BINARY -instr-profile=P | scripts/line_coverage.py mm iommu vfio kvm
"""
import json
import os
import sys


def line_counts(segments):
    """(line, llvm-cov count, corrected count) for every mapped line of one file."""
    by_line = {}
    for s in segments:  # [line, col, count, has_count, is_region_entry, is_gap]
        by_line.setdefault(s[0], []).append(s)
    if not by_line:
        return
    wrapped = None
    for line in range(min(by_line), max(by_line) + 1):
        here = by_line.get(line, [])
        starts = [s for s in here if s[3] and s[4] and not s[5]]
        skipped = bool(here) and not here[0][3] and here[0][4]
        if not skipped and ((wrapped is not None and wrapped[3]) or starts):
            count = wrapped[2] if wrapped is not None else 0
            for s in starts:
                count = max(count, s[2])
            fixed = count
            if count == 0 and wrapped is not None and wrapped[5]:
                fixed = max([s[2] for s in here if s[3] and not s[5]], default=0)
            yield line, count, fixed
        if here:
            wrapped = here[-1]


def main():
    folders = sys.argv[1:]
    data = json.load(sys.stdin)
    # A header shows up once per spelling of its path (../vfio/x.h from one build folder, ../../vfio/x.h from
    # another): its line counts are the largest over the spellings.
    counts = {}  # (path, line) -> [llvm-cov count, corrected count]
    for f in data["data"][0]["files"]:
        path = os.path.normpath(f["filename"])
        if os.path.basename(os.path.dirname(path)) not in folders:
            continue
        for line, count, fixed in line_counts(f["segments"]):
            c = counts.setdefault((path, line), [0, 0])
            c[0], c[1] = max(c[0], count), max(c[1], fixed)
    totals = {d: [0, 0, 0] for d in folders}  # lines, missed by llvm-cov, missed after the correction
    for (path, _), (count, fixed) in counts.items():
        t = totals[os.path.basename(os.path.dirname(path))]
        t[0] += 1
        t[1] += count == 0
        t[2] += fixed == 0
    pct = lambda lines, missed: 100.0 * (lines - missed) / (lines or 1)
    print(f"{'':7} {'lines':>6} {'missed':>7} {'covered':>8}   (llvm-cov's line view: missed, covered)")
    for name, (lines, raw, fixed) in list(totals.items()) + [("all", [sum(t[i] for t in totals.values()) for i in range(3)])]:
        print(f"{name + '/' if name != 'all' else 'all':7} {lines:6d} {fixed:7d} {pct(lines, fixed):7.2f} %   ({raw}, {pct(lines, raw):.2f} %)")


if __name__ == "__main__":
    main()
