#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, coverage + AddressSanitizer) and runs each for a bounded time:
# the HDF5 shard reader on raw bytes, the shard reader on edited fields of valid shards, the
# WebDataset-tar / LLaVA-JSON converters, and the sharded checkpoint reader (index.json and rank files). A crash stops the script with the reproducer's path.
# Usage: bash scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-30}
JOBS=${JOBS:-$(nproc)}
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMODRWKV_CUDA=OFF -DMODRWKV_FUZZ=ON > /dev/null
cmake --build build-fuzz -j "$JOBS" --target fuzz_shard_reader fuzz_shard_fields fuzz_convert fuzz_ckpt_shards \
    make_shard_seeds
mkdir -p build-fuzz/corpus/shard_reader build-fuzz/corpus/shard_fields build-fuzz/corpus/convert \
    build-fuzz/corpus/ckpt_shards build-fuzz/crashes
build-fuzz/tests/fuzz/make_shard_seeds build-fuzz/corpus/shard_reader
for target in shard_reader shard_fields convert ckpt_shards; do
    echo "fuzz_$target: ${SECONDS_PER_TARGET} s"
    # MODRWKV_FUZZ_SEEDS: where fuzz_ckpt_shards writes its valid files as seeds (the others ignore it)
    MODRWKV_FUZZ_SEEDS=build-fuzz/corpus/$target build-fuzz/tests/fuzz/fuzz_$target \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=20 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix=build-fuzz/crashes/ build-fuzz/corpus/$target 2>&1 |
        grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)" || true
    if ls build-fuzz/crashes/ | grep -q .; then
        echo "fuzz_$target found a crash: $(ls build-fuzz/crashes/) (reproduce: build-fuzz/tests/fuzz/fuzz_$target FILE)"
        exit 1
    fi
done
echo "fuzzing: no crashes"
