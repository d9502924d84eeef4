#!/usr/bin/env bash
# Trains the nano model from scratch and writes models/taper-nano.gguf,
# models/taper-nano.tokenizer.json and docs/nano-loss.png. A one-off developer
# step (16-28 minutes on 2 CPU cores, as fast as the host's memory bandwidth
# allows); CI uses the committed model.
#   TAPER_NANO_VENV: a venv with torch, tokenizers, safetensors, numpy (created if missing)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
venv=${TAPER_NANO_VENV:-$root/target/nano-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch tokenizers safetensors numpy
fi
out=$root/target/nano-train
mkdir -p models docs
mkdir -p "$out"
cargo build -q --release -p taper-nano --bins
# Seeds: corpus 0, training 0; the held-out split (seed 1) is logged during
# training and is what the evaluation runs on.
"$root/target/release/nano-corpus" --out "$out/train.jsonl" --n 80000 --seed 0
"$root/target/release/nano-corpus" --out "$out/heldout.jsonl" --n 1000 --seed 1 --held-out --chat-every 0
rm -rf "$out/run"
"$venv/bin/python" crates/taper-nano/train/train.py --corpus "$out/train.jsonl" \
  --heldout "$out/heldout.jsonl" --out "$out/run" --seed 0 --steps 2500 --batch 16 --lr 1e-3 \
  --eval-every 1250
"$root/target/release/nano-gguf" --hf-dir "$out/run/model" --quant q8_0 --out models/taper-nano.gguf
cp "$out/run/tokenizer.json" models/taper-nano.tokenizer.json
cp "$out/run/loss.png" docs/nano-loss.png
"$root/target/release/nano-eval" --model models/taper-nano.gguf --n 500
