# tests/lib.sh - helpers for shell tests; source it, call the checks, end with `finish`.
#   expect_code N cmd...        exit status must be N
#   expect_out PATTERN cmd...   status 0 and stdout matches the grep -E pattern
#   expect_err N PATTERN cmd... status N and stderr matches the pattern
cd "$(dirname "$0")/../.." || exit 2
LLMQ=${LLMQ:-$PWD/llmq}
SHARED=${LLMQ_SHARED:-../shared}
T_PASS=0
T_FAIL=0
TMP=$(mktemp -d "${TMPDIR:-/tmp}/llmq-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
llmq() { "$LLMQ" "$@"; }

ok() { T_PASS=$((T_PASS + 1)); }
not_ok() { T_FAIL=$((T_FAIL + 1)); echo "not ok: $*"; }

expect_code() {
    want=$1; shift
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -eq "$want" ]; then ok; else
        not_ok "'$*' exited $got, expected $want"; sed 's/^/    stderr: /' "$TMP/err" | head -5
    fi
}

expect_out() {
    pat=$1; shift
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -eq 0 ] && grep -Eq -- "$pat" "$TMP/out"; then ok; else
        not_ok "'$*' (exit $got) stdout does not match /$pat/"
        head -5 "$TMP/out" | sed 's/^/    stdout: /'; head -5 "$TMP/err" | sed 's/^/    stderr: /'
    fi
}

expect_err() {
    want=$1; pat=$2; shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" -eq "$want" ] && grep -Eq -- "$pat" "$TMP/err" && [ "$(wc -l <"$TMP/err")" -le 2 ]; then ok; else
        not_ok "'$*' exited $got (expected $want), stderr does not match /$pat/ in at most 2 lines"
        head -5 "$TMP/err" | sed 's/^/    stderr: /'
    fi
}

# check DESCRIPTION COMMAND...: passes when the command succeeds
check() {
    d=$1; shift
    if "$@"; then ok; else not_ok "$d"; fi
}


finish() {
    echo "$T_PASS passed, $T_FAIL failed"
    [ "$T_FAIL" -eq 0 ]
}
