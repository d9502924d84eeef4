#!/usr/bin/env bash
# Regenerates crates/taper-model/tests/fixtures/parity_*: reference logits from
# Hugging Face transformers (f32, CPU) on the tiny random models that the tests
# rebuild with the same seed. Needs torch + transformers (a few GB); CI does not
# run this, it uses the committed fixtures.
#   TAPER_REF_VENV: a venv with torch, transformers, safetensors (created if missing)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${TAPER_REF_VENV:-$root/target/ref-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch transformers safetensors
fi
cargo build -q --release -p taper-cli
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arch in llama qwen3; do
  # Model seed 1 and token seed 7: crates/taper-model/tests/parity.rs uses the same.
  "$root/target/release/taper" make-model --arch $arch --preset tiny --quant f32 \
    --vocab 512 --format safetensors --seed 1 -o "$tmp/$arch"
  "$venv/bin/python" "$root/scripts/reference_logits.py" "$tmp/$arch" \
    "$root/crates/taper-model/tests/fixtures/parity_$arch" 320 7
done
