#!/usr/bin/env bash
# scaling_tp.sh — tensor-parallel layouts measured under mpirun on the CPU (BENCHMARKS.md, "Distributed"):
# `modrwkv train` of the model of scaling.sh (RWKV-7 L4 C256, 4 heads, ctx 128, micro-batch 4 per model
# replica) as 1 rank, tp2, tp4 and tp2 x dp2 (OMP/BLAS 1 thread per rank), MODRWKV_COMM_STATS set. Prints
# per layout: tokens/s (steps 3..STEPS), efficiency = tokens/s / (ranks x tokens/s of 1 rank), and the bytes a
# rank sent per step in all-reduces, counted (comm_stats) and analytic:
#   tensor parallel, per micro-batch of B x T rows on P ranks (an all-reduce of n floats: 4 n (2 (P-1)/P)
#   bytes per rank on average, exactly 4 (n + (P-2) len_r) by comm.h's algorithm):
#     (4 L + 2) all-reduces of B T C floats (embedding; per layer TimeMix output and ChannelMix value forward,
#     the two LayerNorm-input gradients backward; the head's input gradient), the vocabulary-parallel loss
#     (row max, sum of exponentials + target logit, argmax owner: 4 B T floats), and once per step the partial
#     gradients of the replicated token-shift mixes and LoRA first matrices (7 C + C (Dw+Da+Dv+Dg) per layer,
#     block 0's unused value LoRA left out);
#   data parallel over dp ranks: the gradient all-reduce of this rank's trained slice (2 (dp-1)/dp x 4 n).
# Usage: bench/scaling_tp.sh [BUILD_DIR]; STEPS=12 MPIRUN=mpirun.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
MODRWKV=$BUILD/modrwkv
STEPS=${STEPS:-12}
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=("${MPIRUN:-mpirun}" --allow-run-as-root --oversubscribe --mca btl self,vader)
cat > "$WORK/tp.yaml" <<YAML
model: {init: official, n_layer: 4, n_embd: 256, head_size: 64}
data: {train: $SRC/tests/data/lambada_test.jsonl, tokenizer: bytes, val_fraction: 0.02}
train: {ctx_len: 128, micro_batch: 4, max_steps: $STEPS, lr: 3.0e-3, lr_final: 3.0e-4, warmup_steps: 5,
        eval_every: 0, save_every: 0, log_every: 10, threads: 1}
YAML
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for layout in "1 1" "2 2" "4 4" "4 2"; do  # ranks, tp
    set -- $layout
    dir="$WORK/np$1-tp$2"
    MODRWKV_COMM_STATS="$dir.stats.%r.json" "${MPI[@]}" -np "$1" "$MODRWKV" train "$WORK/tp.yaml" --set run_dir="$dir" \
        --set parallel.tp="$2" > "$dir.log" 2>&1 || { echo "scaling_tp.sh: $dir failed" >&2; tail -n 5 "$dir.log" >&2; exit 1; }
done
echo "Measured $(date +%F) on $(getconf _NPROCESSORS_ONLN) cores, steps 3..$STEPS, load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
echo
$PY - "$WORK" "$STEPS" <<'PYEOF'
import json, sys
work, steps = sys.argv[1], int(sys.argv[2])
L, C, B, T = 4, 256, 4, 128
D = 32 + 32 + 32 + 64  # LoRA ranks Dw, Da, Dv, Dg of C 256 (official formulas)

def tps(d):
    rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
    v = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] >= 3]
    return sum(v) / len(v), rows[-1]["params_trained"]

def sent(d, np):  # mean over ranks of all_reduce bytes sent, per step (the final checkpoint's gathers excluded)
    tot = 0
    for r in range(np):
        j = json.load(open("%s.stats.%d.json" % (d, r)))
        tot += j["total"].get("all_reduce", {}).get("bytes_sent", 0)
    return tot / np / steps

base = None
print("| layout | ranks | tokens/s | efficiency vs ranks x 1 rank | all-reduce B sent/rank/step (counted) | analytic | counted / analytic |")
print("|---|---:|---:|---:|---:|---:|---:|")
for np, tp in [(1, 1), (2, 2), (4, 4), (4, 2)]:
    d = "%s/np%d-tp%d" % (work, np, tp)
    t, trained = tps(d)
    base = base or t
    dp = np // tp
    act = (4 * L + 2) * B * T * C + 4 * B * T
    partial = L * (7 * C + C * D) - C * 32
    a_tp = 2 * (tp - 1) / tp * 4 * (act + partial) if tp > 1 else 0
    repl = L * (4 * C + 7 * C + C * D) + 4 * C - C * 32  # replicated trained floats: norms, mixes, LoRA first
    local = (trained - repl) / tp + repl                   # this rank's trained floats (its slices + replicas)
    a_dp = 2 * (dp - 1) / dp * 4 * local if dp > 1 else 0
    a = a_tp + a_dp
    name = "1 rank" if np == 1 else ("tp%d" % tp if dp == 1 else "tp%d x dp%d" % (tp, dp))
    got = sent(d, np)
    print("| %s | %d | %.0f | %.0f%% | %.0f | %.0f | %s |" % (name, np, t, 100 * t / (np * base), got, a,
          "%.4f" % (got / a) if a else "–"))
PYEOF
