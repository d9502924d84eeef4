#!/usr/bin/env bash
# The test suite: fetches the tokenizer fixtures (cached), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-fixtures.sh
cargo test --workspace "$@"
# The decoder's tests again with its lower kernel levels (AVX2 alone; candle's
# kernels), which an AVX-512 machine would otherwise never run: the kernel tests,
# and the parity tests through whatever each level loads and runs.
for level in avx2 none; do
  TAPER_KERNELS=$level cargo test -p taper-model
done
