#!/usr/bin/env bash
# The main job, end to end on a fresh machine: an agent with the calculator on the
# built-in model (models/taper-nano.gguf, a 2M-parameter toy trained in this
# repository on arithmetic word problems), streaming its reasoning, its calculator
# call, the result and the answer. With --random-qwen3: the same agent on a tiny
# random-weight model in the exact GGUF layout of DeepSeek-R1-0528-Qwen3-8B, with
# the real tokenizer (the text is noise; the loop, the grammar and the tool are real).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p taper-cli
if [ "${1:-}" != "--random-qwen3" ]; then
  exec target/release/taper run "${1:-One pen costs 3 dollars. What do 12 pens cost in total?}"
fi
shift
./scripts/fetch-fixtures.sh
model=target/demo/tiny-qwen3-q4_k_m.gguf
mkdir -p target/demo
if [ ! -f "$model" ]; then
  target/release/taper make-model --arch qwen3 --preset tiny --quant q4_k_m --seed 1 \
    --tokenizer fixtures/cache/r1_qwen3.tokenizer.json \
    --chat-template fixtures/chat-templates/r1_0528_qwen3_8b.reconstructed.jinja -o "$model"
fi
exec target/release/taper run --model "$model" --tool calculator \
  --max-steps 3 --think-budget 24 --answer-budget 24 --seed 1 "${1:-What is 17 * 23?}"
