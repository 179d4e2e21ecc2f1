#!/usr/bin/env bash
# Runs the whole test suite: a warnings-as-errors Release build with every ctest suite (unit, cli, mpi), the
# unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer, then the fuzz targets for a bounded
# time (scripts/fuzz.sh). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMODRWKV_WERROR=ON
cmake --build build -j "$JOBS"
(cd build && ctest --output-on-failure -j "$JOBS")

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DMODRWKV_SANITIZE=ON -DMODRWKV_WERROR=ON -DMODRWKV_CUDA=OFF \
      -DCMAKE_C_FLAGS_DEBUG="-O1 -g"
cmake --build build-asan -j "$JOBS"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$JOBS" -L unit)

# libFuzzer targets (clang): shard reader and tar/JSON converters, a bounded time each
bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
