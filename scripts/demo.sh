#!/usr/bin/env bash
# The embedded demo: builds modrwkv, trains a small byte-level RWKV-7 on the LAMBADA passages that ship
# with the project (experiments/demo-text.yaml, a few minutes on a laptop CPU), then samples from it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
./build/modrwkv train experiments/demo-text.yaml "$@"
./build/modrwkv generate --ckpt "$(ls -1 runs/demo-text/checkpoints/step-*.safetensors | tail -n 1)" \
    --prompt "The old man looked at the" --max-tokens 300 --temperature 0.8 --top-p 0.9
