#!/usr/bin/env bash
# The main job, end to end on a fresh machine: fetch the real Qwen3 distill
# tokenizer, write a tiny random-weight model in the real GGUF layout with it, and
# stream a completion through the decoder. (Random weights: the text is noise; the
# point is the path from file to tokens.)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-fixtures.sh
model=target/demo/tiny-qwen3-q4_k_m.gguf
mkdir -p target/demo
cargo build -q --release -p taper-model --bin taper-make-model --example generate
if [ ! -f "$model" ]; then
  target/release/taper-make-model --arch qwen3 --preset tiny --quant q4_k_m --seed 1 \
    --tokenizer fixtures/cache/r1_qwen3.tokenizer.json \
    --chat-template fixtures/chat-templates/r1_0528_qwen3_8b.reconstructed.jinja -o "$model"
fi
target/release/examples/generate "$model" "${1:-What is 17 * 23?}" --tokens 48 --seed 1
