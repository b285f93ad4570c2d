#!/bin/sh
# tests/run.sh - what `make check` runs: the include layer check
# (tests/layers.sh), unit tests (plain and under
# ASan+UBSan), CLI tests of every subcommand, a short run of every fuzz
# target (tests/fuzz/smoke.sh), end-to-end runs on the models
# in ../shared.  Every suite prints "N passed, N failed"; this script adds
# them up and prints the total as its last line.
#   LLMQ_SHARED   where the shared models and data are (default ../shared)
#   LLMQ_QUICK=1  skip the slow end-to-end suites
cd "$(dirname "$0")/.." || exit 2
: "${LLMQ_SHARED:=../shared}"
export LLMQ_SHARED
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
pass=0
fail=0
failed_suites=""
log=build/test-logs
mkdir -p "$log"

run_suite() {  # name command...
    name=$1; shift
    out="$log/$(echo "$name" | tr '/ ' '__').log"
    start=$(date +%s)
    "$@" >"$out" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -n 1)
    p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
    f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    if [ -z "$line" ]; then p=0; f=1; fi
    if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then f=1; fi
    pass=$((pass + p))
    fail=$((fail + f))
    end=$(date +%s)
    if [ "$f" -ne 0 ]; then
        failed_suites="$failed_suites $name"
        echo "FAIL $name: $p passed, $f failed ($((end - start))s, rc $rc)"
        tail -n 30 "$out" | sed 's/^/    /'
    else
        echo "ok   $name: $p passed ($((end - start))s)"
    fi
}

# the layer order of the sources (who may include whom)
run_suite "layers" sh tests/layers.sh
for t in build/tests/t-*; do
    [ -x "$t" ] && run_suite "unit/$(basename "$t")" "$t"
done
for t in build-san/tests/t-*; do
    [ -x "$t" ] && run_suite "asan/$(basename "$t")" env LLMQ_SLOW_SKIP=1 "$t"
done
for t in tests/cli/t[0-9]*.sh; do
    [ -f "$t" ] && run_suite "cli/$(basename "$t" .sh)" sh "$t"
done
# libFuzzer targets: build (clang), regression tests, ~10 s of each
run_suite "fuzz/smoke" sh tests/fuzz/smoke.sh
if [ "${LLMQ_QUICK:-0}" != 1 ]; then
    for t in tests/e2e/t[0-9]*.sh; do
        [ -f "$t" ] && run_suite "e2e/$(basename "$t" .sh)" sh "$t"
    done
fi
[ -n "$failed_suites" ] && echo "failed suites:$failed_suites"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
