#!/usr/bin/env bash
# The embedded demo (`modrwkv demo`): builds modrwkv, then on this CPU with no download builds the demo data
# (digit image QA, spoken digits, text), pretrains a tiny RWKV-7 on text, trains tiny vision and audio encoders,
# runs stage 1 and stage 2, compares a pretrained with a random backbone, evaluates on the held-out test split
# and writes runs/demo/report.md; it ends by generating from one test image and one test clip. Options are
# passed on (`bash scripts/demo.sh --steps-scale 0.2` for a quick look). Interrupted runs resume.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)"
./build/modrwkv demo --out runs/demo "$@"
echo
echo "Try it yourself:"
echo "  ./build/modrwkv generate --ckpt \$(ls runs/demo/vision-stage2/checkpoints/*.safetensors | tail -n 1) --image runs/demo/example-digit.png --prompt 'What digit is this?' --media-after --temperature 0"
echo "  ./build/modrwkv generate --ckpt \$(ls runs/demo/audio-stage2/checkpoints/*.safetensors | tail -n 1) --audio runs/demo/example-speech.wav --prompt 'Transcribe.' --media-after --temperature 0"
