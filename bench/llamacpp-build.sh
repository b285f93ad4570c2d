#!/bin/sh
# Build llama.cpp (CPU only, Release) outside this repo, for benchmarks that
# compare llmq with llama-quantize / llama-perplexity / llama-imatrix /
# llama-bench.
#
# usage: bench/llamacpp-build.sh SOURCE [SRC_DIR] [BUILD_DIR]
#   SOURCE    a llama.cpp git directory (bare mirror from the `fetch` tool, a
#             clone) or a git bundle (node-llama-cpp's llama/gitRelease.bundle)
#   SRC_DIR   where to check the source out   (default /work/llama.cpp-src)
#   BUILD_DIR where to build                  (default /work/llama.cpp-build)
# SOURCE may also come from $LLAMACPP_SOURCE; $JOBS sets the parallelism
# (default 2); ISA=avx2 builds for AVX2 without AVX-512 (GGML_NATIVE off),
# the llama.cpp side of the AVX2 table on an AVX-512 host (with LLMQ_ISA=avx2
# for llmq). Binaries land in BUILD_DIR/bin. llama.cpp is never vendored
# into this repository.
set -eu
src=${1:-${LLAMACPP_SOURCE:-}}
dir=${2:-/work/llama.cpp-src}
out=${3:-/work/llama.cpp-build}
jobs=${JOBS:-2}
[ -n "$src" ] || { echo "usage: $0 SOURCE [SRC_DIR] [BUILD_DIR]" >&2; exit 2; }
if [ ! -e "$dir/CMakeLists.txt" ]; then
    if [ -f "$src" ]; then
        git clone -q "$src" "$dir"          # a bundle
    else
        mkdir -p "$dir"
        git --git-dir="$src" archive HEAD | tar -x -C "$dir"
        git --git-dir="$src" rev-parse HEAD > "$dir/.llmq-commit"
    fi
fi
if [ -d "$dir/.git" ]; then git -C "$dir" rev-parse HEAD > "$dir/.llmq-commit"; fi
echo "llama.cpp commit: $(cat "$dir/.llmq-commit")"
gen=; command -v ninja >/dev/null 2>&1 && gen="-G Ninja"
# LLAMA_CURL is deprecated in newer trees (a warning only); LLAMA_OPENSSL is
# its successor. Both off: the benchmarks read local files only.
isa="-DGGML_NATIVE=ON"
if [ "${ISA:-native}" = avx2 ]; then
    isa="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF"
    isa="$isa -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF"
fi
cmake -S "$dir" -B "$out" $gen -DCMAKE_BUILD_TYPE=Release $isa \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON
nice cmake --build "$out" -j "$jobs" --target llama-quantize llama-perplexity llama-imatrix llama-bench
ls -l "$out/bin/llama-quantize" "$out/bin/llama-perplexity" "$out/bin/llama-imatrix" "$out/bin/llama-bench"
