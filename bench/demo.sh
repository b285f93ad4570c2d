#!/bin/sh
# bench/demo.sh - what `make demo` runs: the main job on the bundled model,
# then proof that quality and speed held.
cd "$(dirname "$0")/.." || exit 2
set -e
M=testdata/tiny-qwen2-gqa
OUT=build/demo
TEXT=testdata/sample.txt
mkdir -p "$OUT"
echo "== bf16 model: $M"
./llmq verify "$M" --text "$TEXT" --ctx 256 --kld-save "$OUT/base.kld"
./llmq verify "$M" --gen "The history of the city" --n 24 --bench
for f in int8 int4 mxint8; do
    echo "== llmq pack $M -o $OUT/model.$f --format $f"
    ./llmq pack "$M" -o "$OUT/model.$f" --format "$f" --json
    ./llmq verify "$OUT/model.$f" --text "$TEXT" --ctx 256 --kld "$OUT/base.kld" --gen "The history of the city" --n 24 --bench
done
