#!/usr/bin/env bash
# Side-by-side CPU benchmark of one RWKV-7 training step: modrwkv vs the PyTorch peer
# (bench/torch_rwkv7_cpu.py: chunked WKV7, fused head+CE, autograd, AdamW), same model and step, in one
# run, alternating the two to share the machine's noise; then RNN-mode generation. Prints a table.
# Usage: bash bench/cpu.sh [L C CTX VOCAB]   (default 6 512 512 65536; needs /usr/bin/python3 with torch)
set -euo pipefail
cd "$(dirname "$0")/.."
L=${1:-6}; C=${2:-512}; T=${3:-512}; V=${4:-65536}
THREADS=${THREADS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}   # both sides: no spin-waiting on a shared machine
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$THREADS" > /dev/null
ours=(); theirs=()
for round in 1 2; do
    ours+=("$(./build/modrwkv bench train --n-layer "$L" --n-embd "$C" --ctx "$T" --vocab "$V" --steps 3 --threads "$THREADS" --json)")
    theirs+=("$(/usr/bin/python3 bench/torch_rwkv7_cpu.py --n-layer "$L" --n-embd "$C" --ctx "$T" --vocab "$V" --steps 3 --threads "$THREADS" | tail -n 1)")
done
gen=$(./build/modrwkv bench generate --n-layer "$L" --n-embd "$C" --vocab "$V" --tokens 256 --threads "$THREADS" --json)
/usr/bin/python3 - "$gen" "${ours[@]}" "${theirs[@]}" <<'PYEOF'
import json, sys
gen = json.loads(sys.argv[1]); runs = [json.loads(a) for a in sys.argv[2:]]
ours = [r for r in runs if r["impl"] == "modrwkv"]; theirs = [r for r in runs if r["impl"] == "pytorch"]
best_o = max(r["tokens_per_s"] for r in ours); best_t = max(r["tokens_per_s"] for r in theirs)
o = ours[0]
print("| L%d C%d ctx %d vocab %d, batch 1, %d threads | tokens/s (best of %d runs) |" % (o["n_layer"], o["n_embd"], o["ctx"], o["vocab"], o["threads"], len(ours)))
print("|---|---|")
print("| modrwkv (C, OpenBLAS sgemm) | %.0f |" % best_o)
print("| PyTorch %s CPU (chunked WKV7, autograd) | %.0f |" % ("(Debian python3-torch)", best_t))
print("| **ratio modrwkv / PyTorch** | **%.2fx** |" % (best_o / best_t))
print("| modrwkv achieved GFLOP/s (6 x matmul params + WKV) | %.1f |" % max(r["gflops"] for r in ours))
print("| this machine's sgemm GFLOP/s (OpenBLAS, 1024-2048 square) | %.1f |" % max(r["sgemm_gflops"] for r in ours))
print("| **fraction of sgemm** | **%.0f%%** |" % (100 * max(r["fraction_of_sgemm"] for r in ours)))
print("| activation memory per micro-batch | %.0f MB |" % o["activation_mb"])
print()
print("| RNN-mode generation, batch 1, L%d C%d V%d | value |" % (gen["n_layer"], gen["n_embd"], gen["vocab"]))
print("|---|---|")
print("| tokens/s | %.1f |" % gen["tokens_per_s"])
print("| ms/token, first quarter of %d tokens | %.2f |" % (gen["tokens"], gen["ms_per_token_first_quarter"]))
print("| ms/token, last quarter | %.2f |" % gen["ms_per_token_last_quarter"])
print("| state (constant in the number of tokens) | %.2f MB |" % gen["state_mb"])
PYEOF
