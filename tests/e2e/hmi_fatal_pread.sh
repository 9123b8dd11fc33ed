# A fatal HMI raised by a model call that holds a lock the report needs: uapi_probe reads GPU RAM through pread
# (the device's lock held) before any link is trained. The report cannot read the model's state then; after its
# wait it holds the HMI alone and says why, and nv2pt run still names the HMI. No QEMU needed.
set -euo pipefail
: "${NV2PT:?}" "${UAPI_PROBE:?}" "${NV2PT_PRELOAD:?}"
export NV2PT_PRELOAD
[ -z "${E2E_SKIP:-}" ] || { echo "SKIP: $E2E_SKIP"; exit 77; }
command -v jq >/dev/null || { echo "SKIP: jq not installed"; exit 77; }
fail() { echo "FAIL: $*" >&2; cat "$work/run.err" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/nv2pt-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
rc=0
"$NV2PT" run --runtime-dir "$work/run" --report "$work/report.json" -- "$UAPI_PROBE" fatal-pread >"$work/run.err" 2>&1 ||
  rc=$?
[ "$rc" -eq $((128 + 7)) ] || fail "nv2pt run's status $rc, not 128 + SIGBUS"
[ -s "$work/report.json" ] || fail "no report after the fatal HMI"
jq -e '.fatal_hmi.gpu == "0004:04:00.0" and .fatal_hmi.cause == "untrained-link" and .fatal_hmi.signal == "SIGBUS"' \
  "$work/report.json" >/dev/null || fail "fatal_hmi: $(jq -c .fatal_hmi "$work/report.json")"
jq -e '.error | test("could not be read at the fatal HMI")' "$work/report.json" >/dev/null ||
  fail "the report does not say why the state is missing"
grep -q "killed by SIGBUS after a fatal HMI: GPU 0004:04:00.0" "$work/run.err" || fail "nv2pt run did not name the HMI"
echo PASS
