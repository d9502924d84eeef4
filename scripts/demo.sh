#!/usr/bin/env bash
# The main job, end to end on a fresh machine: fetch the real Qwen3 distill
# tokenizer, write a tiny random-weight model in the real GGUF layout with it, and
# run an agent with the calculator on it, streaming its reasoning, tool calls and
# answer. (Random weights: the text is noise; the loop, the grammar-constrained
# tool calls and the tool are real.)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-fixtures.sh
model=target/demo/tiny-qwen3-q4_k_m.gguf
mkdir -p target/demo
cargo build -q --release -p taper-cli
if [ ! -f "$model" ]; then
  target/release/taper make-model --arch qwen3 --preset tiny --quant q4_k_m --seed 1 \
    --tokenizer fixtures/cache/r1_qwen3.tokenizer.json \
    --chat-template fixtures/chat-templates/r1_0528_qwen3_8b.reconstructed.jinja -o "$model"
fi
target/release/taper run --model "$model" --tool calculator \
  --max-steps 3 --think-budget 24 --answer-budget 24 --seed 1 "${1:-What is 17 * 23?}"
