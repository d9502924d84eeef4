#!/usr/bin/env bash
# Builds llama.cpp's llama-bench from a pinned source release, for the side-by-side
# benchmark (scripts/bench-vs-llama-cpp.sh). The llama-cpp-python source distribution
# carries llama.cpp under vendor/llama.cpp; cmake and ninja come as Python wheels
# into a private venv, so only python3 and a C++ compiler are needed. Cached in
# target/llama.cpp/; prints the binary's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version=0.3.36 # llama-cpp-python; its vendor/llama.cpp is llama.cpp commit 0c1e570
dir="$root/target/llama.cpp"
bin="$dir/build/bin/llama-bench"
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$dir"
if [ ! -x "$dir/venv/bin/cmake" ]; then
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q cmake ninja scikit-build-core >&2
fi
sdist="$dir/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  # No build isolation: the metadata step then uses the venv's scikit-build-core
  # instead of building its own from source.
  "$dir/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
    -d "$dir" "llama-cpp-python==$version" >&2
fi
src="$dir/src"
if [ ! -f "$src/CMakeLists.txt" ]; then
  rm -rf "$src" "$dir/unpack"
  mkdir -p "$dir/unpack"
  tar xzf "$sdist" -C "$dir/unpack"
  mv "$dir/unpack/llama_cpp_python-$version/vendor/llama.cpp" "$src"
  rm -rf "$dir/unpack"
fi
# GGML_NATIVE: llama.cpp's default, tuned for this CPU (AVX-512 where present).
PATH="$dir/venv/bin:$PATH" cmake -S "$src" -B "$dir/build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
PATH="$dir/venv/bin:$PATH" cmake --build "$dir/build" --target llama-bench -j "$(nproc)" >&2
echo "$bin"
