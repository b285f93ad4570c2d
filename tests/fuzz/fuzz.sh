#!/bin/sh
# tests/fuzz/fuzz.sh - run the libFuzzer targets built in build-fuzz/ (what
# `make fuzz` runs; see tests/fuzz/README).
#   sh tests/fuzz/fuzz.sh [--smoke] [NAME...]     (default: every target)
#   FUZZ_SECONDS  seconds per target (default 60; --smoke: 10)
#   FUZZ_JOBS     targets run at a time (default 1)
# Each target NAME fuzzes build-fuzz/corpus/NAME (the seeds of
# tests/fuzz/corpus/NAME copied in; what it finds stays there between runs)
# with tests/fuzz/NAME.dict if there is one; crash, leak and timeout inputs
# go to build-fuzz/artifacts/NAME/, the log to build-fuzz/logs/NAME.log
# (with --smoke: build-fuzz/smoke-artifacts/NAME/, build-fuzz/smoke-logs/).
# --smoke fuzzes a fresh copy of the seeds instead, so every run starts from
# the same place.  One line per target; exit status 1 if any target crashed,
# leaked, timed out or did not run.
cd "$(dirname "$0")/../.." || exit 2
smoke=0
one=0
while [ $# -gt 0 ]; do
    case $1 in
    --smoke) smoke=1; shift ;;
    --one) one=1; shift ;;     # internal: one target, for FUZZ_JOBS > 1
    *) break ;;
    esac
done
secs=${FUZZ_SECONDS:-$([ $smoke = 1 ] && echo 10 || echo 60)}
jobs=${FUZZ_JOBS:-1}
names=$(echo "$*" | tr ',' ' ')
if [ -z "$names" ]; then
    names=$(ls tests/fuzz/fuzz-*.c | sed 's|.*/fuzz-\(.*\)\.c|\1|')
fi
B=build-fuzz
# a smoke run (make check) keeps its logs apart, so that it can run while a
# long `make fuzz` does without mixing their logs and summaries
L=$B/logs
[ $smoke = 1 ] && L=$B/smoke-logs
mkdir -p "$L"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# run_one NAME: fuzz one target, write its summary line to $L/NAME.sum
run_one() {
    n=$1
    bin=$B/fuzz-$n
    log=$L/$n.log
    art=$B/artifacts/$n
    [ $smoke = 1 ] && art=$B/smoke-artifacts/$n
    if [ $smoke = 1 ]; then corpus=$B/smoke/$n; rm -rf "$corpus"; else corpus=$B/corpus/$n; fi
    mkdir -p "$corpus" "$art"
    if [ ! -x "$bin" ]; then
        echo "FAIL $n: $bin is not built (make fuzz-targets)" >"$L/$n.sum"
        return
    fi
    [ -d "tests/fuzz/corpus/$n" ] && cp -R "tests/fuzz/corpus/$n/." "$corpus/"
    dict=
    [ -f "tests/fuzz/$n.dict" ] && dict=-dict=tests/fuzz/$n.dict
    rm -f "$L/$n.sum"
    touch "$L/$n.start"
    nice -n "${FUZZ_NICE:-10}" "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" $dict "$corpus" >"$log" 2>&1
    rc=$?
    execs=$(LC_ALL=C sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(LC_ALL=C sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    ft=$(grep -ao 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    new=$(find "$art" -type f -newer "$L/$n.start" -printf '%f\n')
    crashes=$(echo "$new" | grep -c '^crash-\|^oom-\|^slow-unit-\|^mismatch-')
    leaks=$(echo "$new" | grep -c '^leak-')
    timeouts=$(echo "$new" | grep -c '^timeout-')
    # a finding libFuzzer wrote no artifact for (or a harness failure)
    if [ "$rc" -ne 0 ] && [ $((crashes + leaks + timeouts)) -eq 0 ]; then crashes=1; fi
    status=ok
    [ "$rc" -ne 0 ] || [ $((crashes + leaks + timeouts)) -ne 0 ] && status=FAIL
    printf '%-4s %-12s %9s execs %7s exec/s  cov %5s  ft %6s  crashes %s  leaks %s  timeouts %s%s\n' \
        "$status" "$n" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$crashes" "$leaks" "$timeouts" \
        "$([ $status = ok ] || echo "  (rc $rc, log $log)")" >"$L/$n.sum"
}

if [ $one = 1 ]; then run_one "$names"; exit 0; fi
for n in $names; do rm -f "$L/$n.sum"; done
if [ "$jobs" -gt 1 ]; then
    echo "$names" | tr ' ' '\n' | grep . | xargs -P "$jobs" -I{} env FUZZ_SECONDS="$secs" \
        sh "$0" $([ $smoke = 1 ] && echo --smoke) --one {}
else
    for n in $names; do run_one "$n"; done
fi
pass=0
fail=0
for n in $names; do
    if [ -f "$L/$n.sum" ]; then cat "$L/$n.sum"; else echo "FAIL $n: no result"; fi
    if grep -q '^ok ' "$L/$n.sum" 2>/dev/null; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
