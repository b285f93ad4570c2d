#!/bin/sh
# Defaults stated once: for every subcommand, each "(default X)" that
# `llmq CMD --help` prints (generated from the option table, which is also
# what the command uses) must be the default man/llmq-CMD.1 states for that
# option under OPTIONS, and every default the man page states must be in
# --help.  One check per option that has a default on either side.
. "$(dirname "$0")/../lib.sh"

# A default is the word after "(default " or "; default " (a stated value;
# "default:" introduces a description, not a value).
DEF_AWK='
function def_of(t,   m) {
    if (match(t, /(\(|; )default [^ ;:)]+/)) {
        m = substr(t, RSTART, RLENGTH)
        sub(/^.*default /, "", m)
        sub(/[.,]$/, "", m)
        return m
    }
    return ""
}'

# help_defaults FILE: "name value" for each option line of --help output
# (an option whose left column is long has its text on the next line).
help_defaults() {
    awk "$DEF_AWK"'
    function flush() { if (cur != "" && (d = def_of(text)) != "") print cur, d; cur = ""; text = "" }
    /^  (-[a-z], )?--[a-z0-9-]+/ {
        flush()
        s = $0; sub(/^  (-[a-z], )?--/, "", s)
        cur = s; sub(/[^a-z0-9-].*$/, "", cur)
        text = s; next
    }
    /^   / { text = text " " $0; next }
    { flush() }
    END { flush() }' "$1"
}

# man_defaults FILE: "name value" for each .TP entry under .SH OPTIONS; the
# name is the first long option of the tag line, the text is the body with
# font escapes and \- undone and macro lines reduced to their words.
man_defaults() {
    awk "$DEF_AWK"'
    function flush() { if (cur != "" && (d = def_of(text)) != "") print cur, d; cur = ""; text = "" }
    {
        line = $0
        gsub(/\\f[BIRP]/, "", line); gsub(/\\-/, "-", line); gsub(/\\\(\*a/, "a", line)
    }
    /^\.SH/ { flush(); opts = ($0 ~ /^\.SH "?OPTIONS/); next }
    !opts { next }
    /^\.TP/ { flush(); tag = 1; next }
    tag {
        tag = 0
        if (match(line, /--[a-z0-9-]+/)) cur = substr(line, RSTART + 2, RLENGTH - 2)
        next
    }
    /^\.(RS|RE|PP|IP|nf|fi|sp|br)/ { next }
    /^\./ { sub(/^\.[A-Z]+ */, "", line); gsub(/"/, "", line) }
    { text = text " " line }
    END { flush() }' "$1"
}

# compare CMD HELPFILE MANFILE: one check per option with a default; prints
# each disagreement.  Returns the number of disagreements (for the self-test).
compare() {
    help_defaults "$2" | sort >"$TMP/h"
    man_defaults "$3" | sort >"$TMP/m"
    bad=0
    for name in $(cut -d' ' -f1 "$TMP/h" "$TMP/m" | sort -u); do
        h=$(awk -v n="$name" '$1 == n { print $2 }' "$TMP/h")
        m=$(awk -v n="$name" '$1 == n { print $2 }' "$TMP/m")
        if [ "$h" = "$m" ]; then ok; else
            bad=$((bad + 1))
            not_ok "llmq $1 --$name: --help says default '${h:-(none)}', $3 says '${m:-(none)}'"
        fi
    done
    return $bad
}

n_cmds=0
for cmd in $(llmq --help | sed -n 's/^  \([a-z-]*\) .*/\1/p'); do
    n_cmds=$((n_cmds + 1))
    llmq "$cmd" --help >"$TMP/help.$cmd" 2>&1
    check "llmq $cmd --help exits 0" test $? -eq 0
    compare "$cmd" "$TMP/help.$cmd" "man/llmq-$cmd.1"
done
check "commands found in llmq --help ($n_cmds)" test "$n_cmds" -ge 8
# the extraction sees the defaults it is meant to see (a parser that finds
# nothing would pass every comparison above)
check "--help of uptrain-gqa states --steps 60" sh -c "grep -q '^steps 60\$' <<EOF
$(help_defaults "$TMP/help.uptrain-gqa")
EOF"
check "man page of uptrain-gqa states --steps 60" sh -c "grep -q '^steps 60\$' <<EOF
$(man_defaults man/llmq-uptrain-gqa.1)
EOF"
check "at least 40 defaults stated across --help" test "$(cat "$TMP"/help.* | grep -c '(default [^:]')" -ge 40

# behaviour follows the table: what verify reports it used, run without the
# options, is what its --help gives as their defaults
hdef() { help_defaults "$TMP/help.verify" | awk -v n="$1" '$1 == n { print $2 }'; }
llmq verify testdata/tiny-qwen2-gqa --ids testdata/tiny-qwen2-gqa/reference/wikitext2_test_ids.bin --max-windows 1 --json >"$TMP/v.json" 2>&1
check "verify --json ran" grep -q '"perplexity"' "$TMP/v.json"
check "verify used --ctx $(hdef ctx)" grep -q "\"ctx\":$(hdef ctx)," "$TMP/v.json"
check "verify used --threads $(hdef threads)" grep -q "\"threads\":$(hdef threads)," "$TMP/v.json"
check "verify used --protocol $(hdef protocol)" grep -q "\"protocol\":\"$(hdef protocol)\"" "$TMP/v.json"
check "verify used --act $(hdef act)" grep -q "\"act\":\"$(hdef act)\"" "$TMP/v.json"

# self-test: a man page that disagrees, and one that leaves a default out,
# are caught (counted as passes here, not as failures of the suite)
sed 's/^Uptraining steps (default 60)/Uptraining steps (default 100)/' man/llmq-uptrain-gqa.1 >"$TMP/bad1.1"
sed 's/^Worker threads (default 2)\./Worker threads./' man/llmq-awq.1 >"$TMP/bad2.1"
check "self-test: the mutation applied" sh -c "! cmp -s man/llmq-uptrain-gqa.1 '$TMP/bad1.1' && ! cmp -s man/llmq-awq.1 '$TMP/bad2.1'"
P0=$T_PASS F0=$T_FAIL
compare uptrain-gqa "$TMP/help.uptrain-gqa" "$TMP/bad1.1" >"$TMP/self1"; r1=$?
compare awq "$TMP/help.awq" "$TMP/bad2.1" >"$TMP/self2"; r2=$?
T_PASS=$P0 T_FAIL=$F0
check "self-test: a changed default is reported" test "$r1" -eq 1
check "self-test: the report names the option" grep -q "llmq uptrain-gqa --steps: --help says default '60', .* says '100'" "$TMP/self1"
check "self-test: a default missing from the man page is reported" test "$r2" -eq 1
check "self-test: that report names the option" grep -q "llmq awq --threads: --help says default '2', .* says '(none)'" "$TMP/self2"

finish
