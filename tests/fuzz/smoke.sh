#!/bin/sh
# tests/fuzz/smoke.sh - the fuzz suite of `make check`: build the libFuzzer
# targets (clang), run the regression tests of what they found under
# clang's sanitizers, then each target over its seed corpus plus
# FUZZ_SECONDS (default 10) of fuzzing, two at a time.  Fails if a target
# crashes, leaks or times out.  Ends with "N passed, N failed".
cd "$(dirname "$0")/../.." || exit 2
cc=${FUZZ_CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz smoke: '$cc' not found: the fuzz targets need clang with libFuzzer" \
         "(Debian: apt-get install clang libclang-rt-14-dev)"
    echo "0 passed, 1 failed"
    exit 1
fi
if ! printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' |
        "$cc" -x c -fsanitize=fuzzer,address,undefined -o /dev/null - >/dev/null 2>&1; then
    echo "fuzz smoke: '$cc' cannot link -fsanitize=fuzzer,address,undefined: libFuzzer is missing" \
         "(Debian: apt-get install libclang-rt-14-dev, or the libclang-rt-N-dev of your clang N)"
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p build-fuzz/logs
# the build is the Makefile's; a make above us must not lend its jobserver
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j"$(nproc 2>/dev/null || echo 2)" fuzz-targets >build-fuzz/make.log 2>&1; then
    tail -n 20 build-fuzz/make.log
    echo "fuzz smoke: make fuzz-targets failed"
    echo "0 passed, 1 failed"
    exit 1
fi
pass=0
fail=0
if build-fuzz/tests/t-fuzzfound >build-fuzz/logs/t-fuzzfound.log 2>&1; then
    echo "ok   t-fuzzfound (clang ASan+UBSan)"
    pass=$((pass + 1))
else
    tail -n 20 build-fuzz/logs/t-fuzzfound.log
    echo "FAIL t-fuzzfound (clang ASan+UBSan)"
    fail=$((fail + 1))
fi
out=$(FUZZ_SECONDS="${FUZZ_SECONDS:-10}" FUZZ_JOBS="${FUZZ_JOBS:-2}" sh tests/fuzz/fuzz.sh --smoke)
echo "$out" | sed '$d'
line=$(echo "$out" | tail -n 1)
p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
[ -n "$p" ] || { p=0; f=1; }
echo "$((pass + p)) passed, $((fail + f)) failed"
[ $((fail + f)) -eq 0 ]
