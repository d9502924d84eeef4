#!/usr/bin/env bash
# taper's decoder and llama.cpp's llama-bench, alternately on the same random-weight
# 8B-shaped GGUF files with the same thread counts: one table with both speeds and
# their ratio. Arguments go to the decode benchmark, e.g.
#   scripts/bench-vs-llama-cpp.sh --arch qwen3 --quant q4_k_m --threads 1
# The files (about 25 GB for all four) are written once into bench-cache/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-fixtures.sh
llama_bench=$(./scripts/build-llama-bench.sh)
cargo bench -p taper-model --bench decode -- --llama-bench "$llama_bench" "$@"
