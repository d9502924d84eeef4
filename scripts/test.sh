#!/usr/bin/env bash
# The test suite: fetches the tokenizer fixtures (cached), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-fixtures.sh
cargo test --workspace "$@"
