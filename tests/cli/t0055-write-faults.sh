#!/bin/sh
# Faults while writing, for every command that writes a file or directory:
# a full disk (ENOSPC), a file size limit (ulimit -f: EFBIG, SIGXFSZ
# ignored), a read-only output directory, EIO from fsync or close, and
# kill -9 in the middle of a write.  Where llmq survives: status 3, exactly
# one stderr line naming the output (never a temp name), no output and no
# debris, an earlier output left as it was.  After any of them a later run
# into the same output succeeds and sweeps what a killed run left; a live
# writer's temp is never swept.  The inputs are untouched throughout.
#
# A full disk and a read-only directory are a tmpfs mounted here (a private
# mount namespace where unshare(1) works) and, always as well, the
# LD_PRELOAD shim build/tools/faultfs.so; fsync/close errors and the kills
# come from the shim only.  LLMQ_T0055_NOMOUNT=1 runs without mounting.
if [ -z "$LLMQ_T0055_NS" ] && [ "${LLMQ_T0055_NOMOUNT:-0}" != 1 ] &&
    command -v unshare >/dev/null 2>&1 && unshare -m --propagation private true 2>/dev/null; then
    LLMQ_T0055_NS=1 exec unshare -m --propagation private sh "$0" "$@"
fi
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
SO=$PWD/build/tools/faultfs.so
MOUNTS=""
trap 'for m in $MOUNTS; do umount "$m" 2>/dev/null; done; rm -rf "$TMP"' EXIT
if [ ! -f "$SO" ]; then
    not_ok "$SO is missing (make tools)"
    finish
    exit 1
fi

mkdir "$TMP/p"
cp -r $M "$TMP/p/m"
W="$TMP/p/m"
rm -rf "$W/reference"
chmod a-w "$W"/*
head -c 20000 "$SHARED/data/tinyshakespeare.txt" >"$TMP/cal.txt"
llmq tokenize $W "$TMP/cal.txt" --ids-out "$TMP/ids.bin"
llmq calibrate $W --text "$TMP/cal.txt" --samples 1 --seqlen 8 -o "$TMP/s.st"
llmq pack $W -o "$TMP/p/q4" --group 32 >/dev/null
sums() { (cd "$TMP" && cksum p/m/* cal.txt ids.bin s.st); }
sums >"$TMP/sums.before"

# wcmd KIND OUT: the command of KIND, writing OUT.  Every output is over
# 8 KiB (ulimit -f 8 is 4 or 8 KiB, as the shell counts blocks).
KINDS="pack smooth smooth-stats awq calibrate uptrain state logits kld tokenize export export-ct"
wcmd() {
    case $1 in
    pack) llmq pack $W -o "$2" ;;
    smooth) llmq smooth $W --stats "$TMP/s.st" --alpha 0.5 -o "$2" ;;
    smooth-stats) rm -rf "$TMP/side"
        llmq smooth $W --stats "$TMP/s.st" --alpha 0.5 -o "$TMP/side" --stats-out "$2" ;;
    awq) llmq awq $W -o "$2" --text "$TMP/cal.txt" --samples 1 --seqlen 8 ;;
    calibrate) llmq calibrate $W --text "$TMP/cal.txt" --samples 1 --seqlen 8 -o "$2" ;;
    uptrain) llmq uptrain-gqa $W --kv-heads 1 --pool mean --steps 0 -o "$2" ;;
    state) llmq uptrain-gqa $W --kv-heads 1 --pool mean --text "$TMP/cal.txt" --steps 2 --stop-after 1 \
            --seqlen 8 -o "$TMP/side-up" --state "$2" ;;
    logits) llmq verify $W --ids "$TMP/ids.bin" --ctx 8 --max-windows 1 --logits-out "$2" ;;
    kld) llmq verify $W --ids "$TMP/ids.bin" --ctx 8 --max-windows 4 --kld-save "$2" ;;
    tokenize) llmq tokenize $W "$TMP/cal.txt" --ids-out "$2" ;;
    export) llmq export $W -o "$2" --type q4_0 ;;
    export-ct) llmq export "$TMP/p/q4" --to compressed-tensors -o "$2" ;;
    *) echo "wcmd: unknown kind $1" >&2; return 99 ;;
    esac
}
# the output name of KIND in DIR
out_of() {
    case $1 in pack|smooth|awq|uptrain|export-ct) echo "$2/$1.d" ;; *) echo "$2/$1.out" ;; esac
}
# a checksum of an output file or of every file in an output directory
outsum() {
    if [ -d "$1" ]; then (cd "$1" && cksum *); elif [ -e "$1" ]; then cksum <"$1"; else echo none; fi
}
efbig() { (ulimit -f 8 && wcmd "$@"); }
shim() {  # FAULT PATH-PART KIND OUT
    f=$1; part=$2; shift 2
    LD_PRELOAD=$SO LLMQ_FAULT=$f LLMQ_FAULT_PATH=$part wcmd "$@"
}

# fault DESC DIR OUT PATTERN CMD...: CMD fails with status 3 and one stderr
# line "llmq CMD: OUT[/file]: ..." matching PATTERN, with no temp name in it;
# DIR holds what it held before; OUT (absent or an earlier output) is as it was
fault() {
    desc=$1; dir=$2; out=$3; pat=$4; shift 4
    ls -A "$dir" >"$TMP/ls.before"
    outsum "$out" >"$TMP/out.before"
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    lines=$(wc -l <"$TMP/err")
    msg=$(cat "$TMP/err")
    named=0
    case $msg in "llmq "*": $out: "* | "llmq "*": $out/"*": "*) named=1 ;; esac
    if [ "$got" -eq 3 ] && [ "$lines" -eq 1 ] && [ $named = 1 ] && grep -Eq -- "$pat" "$TMP/err" &&
        ! grep -Eq '\.llmq-|\.tmp' "$TMP/err"; then ok; else
        not_ok "$desc: exit $got (want 3), $lines stderr lines (want 1 naming $out, matching /$pat/)"
        head -5 "$TMP/err" | sed 's/^/    stderr: /'
    fi
    ls -A "$dir" >"$TMP/ls.after"
    if cmp -s "$TMP/ls.before" "$TMP/ls.after"; then ok; else
        not_ok "$desc: $dir holds debris: $(comm -13 "$TMP/ls.before" "$TMP/ls.after" | tr '\n' ' ')"
    fi
    outsum "$out" >"$TMP/out.after"
    check "$desc: the earlier output is as it was" cmp -s "$TMP/out.before" "$TMP/out.after"
}

# 1. a full disk
mkdir "$TMP/full"
if [ "${LLMQ_T0055_NOMOUNT:-0}" != 1 ] && mount -t tmpfs -o size=4k tmpfs "$TMP/full" 2>/dev/null; then
    MOUNTS="$TMP/full $MOUNTS"
    for k in $KINDS; do
        fault "$k on a full tmpfs" "$TMP/full" "$(out_of $k "$TMP/full")" 'No space left on device' \
            wcmd $k "$(out_of $k "$TMP/full")"
    done
else
    echo "note: cannot mount a tmpfs here; a full disk is injected by faultfs.so only"
fi
mkdir "$TMP/nospc"
for k in $KINDS; do
    fault "$k with ENOSPC from faultfs" "$TMP/nospc" "$(out_of $k "$TMP/nospc")" 'write failed: No space left on device' \
        shim write:ENOSPC:4096 "$TMP/nospc/" $k "$(out_of $k "$TMP/nospc")"
done

# 2. a file size limit: EFBIG, not death by SIGXFSZ; an earlier output of
# the same name stays, and a run without the limit then replaces it
mkdir "$TMP/big"
# smooth --stats-out only after its directory, which the limit stops first:
# its EFBIG comes from the shim below
for k in $(echo $KINDS | sed 's/smooth-stats//'); do
    o=$(out_of $k "$TMP/big")
    expect_code 0 wcmd $k "$o"
    fault "$k over ulimit -f" "$TMP/big" "$o" 'write failed: File too large' efbig $k "$o"
    expect_code 0 wcmd $k "$o"
done
fault "smooth-stats with EFBIG from faultfs" "$TMP/big" "$TMP/big/smooth-stats.out" 'write failed: File too large' \
    shim write:EFBIG:4096 "$TMP/big/" smooth-stats "$TMP/big/smooth-stats.out"
ls -A "$TMP/big" | grep -v '\.\(d\|out\)$' >"$TMP/debris"
check "no debris beside the outputs after EFBIG" test ! -s "$TMP/debris"

# 3. a read-only output directory (root ignores permission bits: a
# read-only tmpfs, and the shim's EROFS from mkstemp/mkdtemp)
mkdir "$TMP/ro"
if [ "${LLMQ_T0055_NOMOUNT:-0}" != 1 ] && mount -t tmpfs -o size=1m tmpfs "$TMP/ro" 2>/dev/null; then
    MOUNTS="$TMP/ro $MOUNTS"
    echo old >"$TMP/ro/tokenize.out"
    if mount -o remount,ro "$TMP/ro" 2>/dev/null; then
        for k in $KINDS; do
            fault "$k into a read-only mount" "$TMP/ro" "$(out_of $k "$TMP/ro")" 'Read-only file system' \
                wcmd $k "$(out_of $k "$TMP/ro")"
        done
    else
        echo "note: cannot remount read-only; EROFS is injected by faultfs.so only"
    fi
else
    echo "note: cannot mount a tmpfs here; EROFS is injected by faultfs.so only"
fi
mkdir "$TMP/rofs"
for k in $KINDS; do
    fault "$k with EROFS from faultfs" "$TMP/rofs" "$(out_of $k "$TMP/rofs")" 'cannot create.*Read-only file system' \
        shim create:EROFS "$TMP/rofs/" $k "$(out_of $k "$TMP/rofs")"
done

# 4. EIO from fsync and from close, after every byte went out
mkdir "$TMP/eio"
for k in $KINDS; do
    o=$(out_of $k "$TMP/eio")
    fault "$k with EIO from fsync" "$TMP/eio" "$o" 'fsync failed: Input/output error' shim fsync:EIO "$TMP/eio/" $k "$o"
    fault "$k with EIO from close" "$TMP/eio" "$o" 'close failed: Input/output error' shim close:EIO "$TMP/eio/" $k "$o"
done

# 5. kill -9 mid-write: the earlier output stays whole, the temp is left;
# the next run succeeds and removes it
mkdir "$TMP/kill"
for k in $KINDS; do
    o=$(out_of $k "$TMP/kill")
    expect_code 0 wcmd $k "$o"
    outsum "$o" >"$TMP/kill.before"
    expect_code 137 shim write:KILL:5000 "$TMP/kill/" $k "$o"
    check "$k killed: its temp is left" test -n "$(ls -A "$TMP/kill" | grep '\.llmq-')"
    outsum "$o" >"$TMP/kill.after"
    check "$k killed: the earlier output is whole" cmp -s "$TMP/kill.before" "$TMP/kill.after"
    expect_code 0 wcmd $k "$o"
    check "$k after a kill: no temp left" test -z "$(ls -A "$TMP/kill" | grep '\.llmq-')"
done
expect_out '^ok ' llmq verify "$TMP/kill/pack.d"
llmq tokenize $W "$TMP/cal.txt" --ids-out "$TMP/ids.again"
check "tokenize after a kill wrote the same ids" cmp -s "$TMP/ids.again" "$TMP/kill/tokenize.out"

# 6. a writer that is alive keeps its temp: a second run into the same
# output neither waits for it nor removes its temp; a real kill -9 then
# leaves it to the third run
mkdir "$TMP/live"
for k in pack tokenize; do
    o=$(out_of $k "$TMP/live")
    rm -f "$TMP/fault.log"
    (LLMQ_FAULT_LOG="$TMP/fault.log" shim write:STOP:5000 "$TMP/live/" $k "$o" >/dev/null 2>&1) &
    sub=$!
    i=0
    while [ $i -lt 300 ] && ! grep -q '^faultfs: write ' "$TMP/fault.log" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    pid=$(sed -n 's/^faultfs: write \([0-9]*\)$/\1/p' "$TMP/fault.log" 2>/dev/null | head -n 1)
    check "$k: the first writer stopped mid-write" test -n "$pid"
    held=$(ls -A "$TMP/live" | grep '\.llmq-')
    expect_code 0 wcmd $k "$o"
    check "$k: the live writer's temp is kept" test -n "$held" -a -e "$TMP/live/$held"
    [ -n "$pid" ] && kill -9 "$pid"
    wait $sub 2>/dev/null
    check "$k: the killed writer left its temp" test -n "$held" -a -e "$TMP/live/$held"
    expect_code 0 wcmd $k "$o"
    check "$k: the third run removed it" test -z "$(ls -A "$TMP/live" | grep '\.llmq-')"
done

sums >"$TMP/sums.after"
check "inputs untouched" cmp -s "$TMP/sums.before" "$TMP/sums.after"
finish
