#!/bin/sh
# llmq verify --kv-cache: an f32 cache gives the default perplexity, int8
# one within 1%, the JSON names the cache's size; calibrated key ranges
# from llmq calibrate; streaming windows past max_position_embeddings in
# constant memory; --gen and --bench on a quantized cache; the option
# combinations refused with one line.  --threads 1 throughout: a window
# decodes one token at a time, and a shared machine makes a thread pool
# of short steps slow.
. "$(dirname "$0")/../lib.sh"
M=testdata/tiny-qwen2-gqa
T=testdata/sample.txt
TC=build/tools/tcheck
V="verify $M --text $T --threads 1"

# ---- f32 and int8 caches against the default attention ----
llmq $V --ctx 128 --max-windows 2 --json >"$TMP/base.json" 2>&1
llmq $V --ctx 128 --max-windows 2 --kv-cache f32 --json >"$TMP/f32.json" 2>&1
llmq $V --ctx 128 --max-windows 2 --kv-cache int8 --json >"$TMP/int8.json" 2>&1
P0=$($TC json "$TMP/base.json" perplexity)
check "--kv-cache f32: perplexity of the default cache to 1e-5" $TC relerr "$($TC json "$TMP/f32.json" perplexity)" "$P0" 1e-5
check "--kv-cache int8: perplexity within 1% of the default" $TC relerr "$($TC json "$TMP/int8.json" perplexity)" "$P0" 1e-2
check "--kv-cache int8 is not the f32 cache" sh -c "! $TC relerr '$($TC json "$TMP/int8.json" perplexity)' '$P0' 1e-9 >/dev/null"
check "the default run reports no KV cache" sh -c "! grep -q kv_cache '$TMP/base.json'"
# head_dim 32, KIVI groups of 32 tokens, value groups of 32: 8 + 1 bits per
# key and per value; 4 layers * 2 KV heads * 32 * 2 * 9 / 8 bytes a token
check "int8 json: kv_bits_per_value 9" test "$($TC json "$TMP/int8.json" kv_bits_per_value)" = 9
check "int8 json: kv_bytes_per_token 576" test "$($TC json "$TMP/int8.json" kv_bytes_per_token)" = 576
check "f32 json: kv_bits_per_value 32" test "$($TC json "$TMP/f32.json" kv_bits_per_value)" = 32
check "int8 json: kv_keys per token group" grep -q '"kv_keys":"per channel per token group' "$TMP/int8.json"

# ---- refused: exit 2, one line ----
expect_err 2 '^llmq verify: --kv-cache: .*int4x' llmq $V --kv-cache int4x
check "a bad --kv-cache is one line" test "$(wc -l <"$TMP/err")" -eq 1
for bad in int1 int9 nuq "" f16; do
    expect_err 2 "--kv-cache" llmq $V --kv-cache "$bad"
done
# nuq needs codebooks, fitted on a calibration's rows
expect_err 2 'nuq4' llmq $V --ctx 128 --max-windows 1 --kv-cache nuq4
expect_code 0 llmq $V --ctx 128 --max-windows 1 --kld-save "$TMP/base.kld"
expect_err 2 'need a --kv-window that holds --ctx' llmq $V --ctx 128 --max-windows 1 --kld "$TMP/base.kld" --kv-window 60
expect_err 2 'need a --kv-window that holds --ctx' llmq $V --ctx 128 --max-windows 1 --kld-save "$TMP/w.kld" --kv-window 60
check "a refused --kld-save writes nothing" test ! -e "$TMP/w.kld"
expect_err 2 'need a --kv-window that holds --ctx' llmq $V --ctx 128 --max-windows 1 --logits-out "$TMP/w.st" --kv-window 60
# a window that holds the context: the default's distributions
llmq $V --ctx 128 --max-windows 1 --kld "$TMP/base.kld" --kv-window 127 --kv-sinks 1 --json >"$TMP/wk.json" 2>&1
check "a window holding --ctx: KLD to the default below 1e-9" \
    awk -v k="$($TC json "$TMP/wk.json" kld_mean)" 'BEGIN { exit !(k >= 0 && k < 1e-9) }'
expect_err 2 'exceeds the model.s max_position_embeddings 1024' llmq $V --ctx 2048 --max-windows 1
expect_err 2 'exceeds the model.s max_position_embeddings 1024' llmq $V --ctx 2048 --max-windows 1 --kv-cache int8

# ---- calibrated key ranges ----
expect_code 0 llmq calibrate $M --text testdata/calib.txt --samples 4 --seqlen 128 --keep 16 --threads 1 -o "$TMP/s.stats"
expect_err 2 'serves --act int8-static or a quantized --kv-cache' llmq $V --ctx 128 --max-windows 1 --stats "$TMP/s.stats"
expect_err 2 'serves --act int8-static or a quantized --kv-cache' llmq $V --ctx 128 --max-windows 1 --stats "$TMP/s.stats" --kv-cache f32
expect_err 2 'serves --act int8-static or a quantized --kv-cache' llmq $V --ctx 128 --max-windows 1 --stats "$TMP/s.stats" --kv-cache bf16
llmq $V --ctx 128 --max-windows 2 --kv-cache int4 --stats "$TMP/s.stats" --json >"$TMP/cal.json" 2>&1
check "--stats: kv_keys calibrated" grep -q '"kv_keys":"calibrated' "$TMP/cal.json"
check "calibrated int4: 4 bits a key, 4 + 1 a value" test "$($TC json "$TMP/cal.json" kv_bits_per_value)" = 4.5
check "calibrated int4: perplexity within 10% of the default" $TC relerr "$($TC json "$TMP/cal.json" perplexity)" "$P0" 0.1
llmq $V --ctx 128 --max-windows 2 --kv-cache nuq4 --stats "$TMP/s.stats" --json >"$TMP/nuq.json" 2>&1
check "nuq4 with --stats: 4.5 bits a value" test "$($TC json "$TMP/nuq.json" kv_bits_per_value)" = 4.5
check "nuq4 with --stats: perplexity within 10% of the default" $TC relerr "$($TC json "$TMP/nuq.json" perplexity)" "$P0" 0.1
# statistics of the layout before KV ranges: the same file with the kv_*
# tensors renamed (same length, so every offset holds)
sed -e 's/\.kv_min"/.zz_min"/g' -e 's/\.kv_max"/.zz_max"/g' "$TMP/s.stats" >"$TMP/old.stats"
check "the old-layout file differs from the new" sh -c "! cmp -s '$TMP/s.stats' '$TMP/old.stats'"
expect_err 2 "$TMP/old.stats: statistics have no KV ranges" llmq $V --ctx 128 --max-windows 1 --kv-cache int4 --stats "$TMP/old.stats"
check "the old-layout refusal is one line" test "$(wc -l <"$TMP/err")" -eq 1

# ---- streaming: sinks and a window, past max_position_embeddings ----
llmq $V --ctx 256 --max-windows 1 --kv-window 60 --kv-sinks 4 --json >"$TMP/s256.json" 2>&1
llmq $V --ctx 512 --max-windows 1 --kv-window 60 --kv-sinks 4 --json >"$TMP/s512.json" 2>&1
llmq $V --ctx 2048 --max-windows 1 --kv-window 60 --kv-sinks 4 --json >"$TMP/s2048.json" 2>&1
llmq $V --ctx 1024 --max-windows 1 --json >"$TMP/d1024.json" 2>&1
check "streaming --ctx 256: 255 scored tokens" test "$($TC json "$TMP/s256.json" scored_tokens)" = 255
check "streaming --ctx 2048 (past max_position_embeddings): 2047 scored tokens" \
    test "$($TC json "$TMP/s2048.json" scored_tokens)" = 2047
check "streaming json: kv_window 60, kv_sinks 4" sh -c "grep -q '\"kv_sinks\":4,' '$TMP/s256.json' && grep -q '\"kv_window\":60,' '$TMP/s256.json'"
check "streaming perplexity is finite" awk -v p="$($TC json "$TMP/s2048.json" perplexity)" 'BEGIN { exit !(p > 1 && p < 4096) }'
R256=$($TC json "$TMP/s256.json" peak_rss_bytes)
# 1 MiB of slack for allocator noise; the dense cache at 1024 needs 20+ MiB more
check "peak RSS does not grow from ctx 256 to 512 with a window" \
    awk -v a="$R256" -v b="$($TC json "$TMP/s512.json" peak_rss_bytes)" 'BEGIN { exit !(b <= a + 1048576) }'
check "peak RSS does not grow from ctx 256 to 2048 with a window" \
    awk -v a="$R256" -v b="$($TC json "$TMP/s2048.json" peak_rss_bytes)" 'BEGIN { exit !(b <= a + 1048576) }'
check "without a window, ctx 1024 takes 8 MiB more than a window of 2048 (the check has teeth)" \
    awk -v a="$($TC json "$TMP/s2048.json" peak_rss_bytes)" -v b="$($TC json "$TMP/d1024.json" peak_rss_bytes)" \
        'BEGIN { exit !(b > a + 8388608) }'
# a quantized cache in a window (KIVI groups of 8 inside a window of 32)
llmq $V --ctx 256 --max-windows 1 --kv-window 32 --kv-sinks 4 --kv-cache int8 --kv-key-group 8 --json >"$TMP/sq.json" 2>&1
check "streaming int8: 255 scored tokens" test "$($TC json "$TMP/sq.json" scored_tokens)" = 255
expect_err 2 'shorter than a key group' llmq $V --ctx 256 --max-windows 1 --kv-window 16 --kv-cache int8

# ---- sliding-window recomputation: the exact baseline of a window ----
# a window of 64 every 16 tokens, its last token scored
llmq verify $M --threads 1 --text "$T" --protocol sliding --ctx 64 --stride 16 --max-windows 8 --json >"$TMP/sl.json" 2>&1
check "sliding: 8 windows, one token each" test "$($TC json "$TMP/sl.json" scored_tokens)" = 8
check "sliding: protocol named" grep -q '"protocol":"sliding"' "$TMP/sl.json"
expect_err 2 'full or llamacpp protocol' llmq verify $M --threads 1 --text "$T" --protocol sliding --ctx 64 --kld-save "$TMP/x.kld"

# ---- generation and the benchmark on a quantized cache ----
G="verify $M --threads 1 --gen The_history_of --n 20 --json"
llmq $G >"$TMP/g.json" 2>&1
llmq $G --kv-cache int4 >"$TMP/g4.json" 2>&1
llmq $G --kv-cache int8 --kv-window 8 --kv-sinks 2 --kv-key-group 4 >"$TMP/gw.json" 2>&1
count_ids() { $TC json "$1" gen_ids | tr -c '0-9\n' ' ' | wc -w; }
N0=$(count_ids "$TMP/g.json")
check "gen: prompt + 20 ids ($N0)" test "$N0" -gt 20
check "--gen --kv-cache int4: as many ids as the default" test "$(count_ids "$TMP/g4.json")" -eq "$N0"
check "--gen in a window of 8: as many ids (generation past the window)" test "$(count_ids "$TMP/gw.json")" -eq "$N0"
check "--gen int4 json names the cache" grep -q '"kv_cache":"int4"' "$TMP/g4.json"
llmq verify $M --threads 1 --bench --bench-ctx 200 --kv-cache int4 --json >"$TMP/b.json" 2>&1
check "--bench --bench-ctx 200 --kv-cache int4: decode_ctx 200" test "$($TC json "$TMP/b.json" decode_ctx)" = 200
check "--bench --kv-cache int4: decode_tok_s positive" awk -v d="$($TC json "$TMP/b.json" decode_tok_s)" 'BEGIN { exit !(d > 0) }'
finish
