#!/bin/sh
# tests/layers.sh - the layer order of the sources, read from their paths:
#   0 lib/base   errors, files, threads, checked arithmetic, sha256, weight views
#   1 formats    file formats (bytes <-> views), tokenizers
#   2 lib/*.c, lib/kernels, lib/quant, lib/train   model, runner, kernels, quantizers
#   3 calib      calibration data and statistics
#   4 lib/algo, lib/export   algorithms and exporters that drive a model
#   5 cmd        the command line
# A file may include its own layer or a lower one, never a higher one; a
# file in no layer, an include that names no file, and an include cycle
# fail too.  One check per file, plus one for cycles.
cd "$(dirname "$0")/.." || exit 2
layer() {
    case $1 in
        lib/base/*) echo 0 ;;
        formats/*) echo 1 ;;
        lib/kernels/*|lib/quant/*|lib/train/*) echo 2 ;;
        lib/algo/*|lib/export/*) echo 4 ;;
        lib/*/*) echo x ;;
        lib/*) echo 2 ;;
        calib/*) echo 3 ;;
        cmd/*) echo 5 ;;
        *) echo x ;;
    esac
}
pass=0 fail=0 edges=$(mktemp) && trap 'rm -f "$edges"' EXIT
for f in $(find lib formats calib cmd -name '*.[ch]' | sort); do
    lf=$(layer "$f")
    bad=0
    [ "$lf" = x ] && { echo "$f: in no layer (tests/layers.sh)"; bad=1; }
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
        t=$(realpath -m --relative-to=. "$(dirname "$f")/$inc")
        [ -f "$t" ] || t=$(realpath -m --relative-to=. "$inc")
        [ -f "$t" ] || { echo "$f -> $inc: no such file"; bad=1; continue; }
        [ "$t" = "$f" ] && { echo "$f -> $inc: includes itself"; bad=1; }
        echo "$f $t" >>"$edges"
        lt=$(layer "$t")
        [ "$lt" = x ] || [ "$lf" = x ] || [ "$lt" -le "$lf" ] ||
            { echo "$f -> $inc: layer $lf includes layer $lt"; bad=1; }
    done
    if [ $bad = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
if tsort "$edges" >/dev/null 2>"$edges.err"; then pass=$((pass + 1)); else
    fail=$((fail + 1)); echo "include cycle:"; sed 's/^/    /' "$edges.err"; fi
rm -f "$edges.err"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
