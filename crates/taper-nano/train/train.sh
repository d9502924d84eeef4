#!/usr/bin/env bash
# Trains the nano model from scratch and writes models/taper-nano.gguf,
# models/taper-nano.tokenizer.json and docs/nano-loss.png. A one-off developer
# step (about 25 minutes on 2 CPU cores); CI uses the committed model.
#   TAPER_NANO_VENV: a venv with torch, tokenizers, safetensors (created if missing)
#   TAPER_NANO_MINUTES: the training time budget (default 25)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
venv=${TAPER_NANO_VENV:-$root/target/nano-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch tokenizers safetensors
fi
out=$root/target/nano-train
mkdir -p "$out"
cargo build -q --release -p taper-nano --bins
# Seeds: corpus 0, training 0; the held-out split the evaluation uses is seed 1.
"$root/target/release/nano-corpus" --out "$out/train.jsonl" --n 30000 --seed 0
"$venv/bin/python" crates/taper-nano/train/train.py --corpus "$out/train.jsonl" \
  --out "$out/run" --seed 0 --minutes "${TAPER_NANO_MINUTES:-25}" --batch 12
"$root/target/release/nano-gguf" --hf-dir "$out/run/model" --quant q8_0 --out models/taper-nano.gguf
cp "$out/run/tokenizer.json" models/taper-nano.tokenizer.json
cp "$out/run/loss.png" docs/nano-loss.png
"$root/target/release/nano-eval" --model models/taper-nano.gguf --n 500
