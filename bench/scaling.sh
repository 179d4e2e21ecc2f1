#!/usr/bin/env bash
# scaling.sh — distributed scaling: measured on this machine under mpirun, and modelled for GPU clusters
# (BENCHMARKS.md, "Distributed: communication volume and scaling model").
#
# 1. Weak scaling of data-parallel training on the CPU: `modrwkv train` with a small RWKV-7 (L4 C256, ctx 128)
#    and a fixed micro-batch per rank, for dp = 1, 2, 4 ranks (OMP/BLAS 1 thread each) with ZeRO off and on,
#    REPEATS runs each, interleaved. tokens/s over steps 6..STEPS comes from metrics.jsonl (the best run: the
#    least disturbed by other jobs; the other columns are medians);
#    weak-scaling efficiency = tokens/s(dp) / (dp x tokens/s(dp1)). MODRWKV_COMM_STATS=<file> makes every
#    rank write its communication counts (sharding/comm_stats.h): the bytes each rank sent per step in the
#    gradient collectives (all_reduce for ZeRO-0, reduce_scatter + all_gather for ZeRO-1) are compared with
#    the analytic volume, 2 (P-1)/P n 4 (ZeRO-0, rank average) and 2 (P-1) ceil(n/P) 4 (ZeRO-1), n = the
#    trained parameters (params_trained in metrics.jsonl), and the share of the run spent inside collectives
#    (waiting for slower ranks included) and the mean time of one gradient collective call are printed.
# 2. bench/scaling_model.py: the analytic model of H100 nodes (its formulas are printed with it).
# Prints markdown. Usage: bench/scaling.sh [BUILD_DIR] (default build); REPEATS=3 STEPS=30 MPIRUN=mpirun.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
MODRWKV=$BUILD/modrwkv
REPEATS=${REPEATS:-3}
STEPS=${STEPS:-30}
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
test -x "$MODRWKV" || { echo "scaling.sh: $MODRWKV not found: build first (cmake --build $BUILD)" >&2; exit 1; }

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=("${MPIRUN:-mpirun}" --allow-run-as-root --oversubscribe --mca btl self,vader)

cat > "$WORK/weak.yaml" <<YAML
model: {init: official, n_layer: 4, n_embd: 256, head_size: 64}
data: {train: $SRC/tests/data/lambada_test.jsonl, tokenizer: bytes, val_fraction: 0.02}
train: {ctx_len: 128, micro_batch: 4, max_steps: $STEPS, lr: 3.0e-3, lr_final: 3.0e-4, warmup_steps: 5,
        eval_every: 0, save_every: 0, log_every: 10, threads: 1}
YAML

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq 1 "$REPEATS"); do
    for zero in 0 1; do
        for np in 1 2 4; do
            dir="$WORK/z$zero-dp$np-r$rep"
            MODRWKV_COMM_STATS="$dir.stats.%r.json" "${MPI[@]}" -np "$np" "$MODRWKV" train "$WORK/weak.yaml" \
                --set run_dir="$dir" --set parallel.zero=$zero > "$dir.log" 2>&1 ||
                { echo "scaling.sh: run $dir failed:" >&2; tail -n 5 "$dir.log" >&2; exit 1; }
        done
    done
done

echo "**Measured on this machine** ($(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);"
echo "L4 C256 ctx 128, micro-batch 4 per rank, 1 thread per rank, steps 6..$STEPS, $REPEATS runs each: tokens/s"
echo "and ms/step of the best run, the other columns medians; load average (1/5/15 min) $LOAD_BEFORE before the"
echo "runs, $(cut -d' ' -f1-3 /proc/loadavg) after)"
echo
$PY - "$WORK" "$REPEATS" "$STEPS" <<'PYEOF'
import glob, json, math, statistics, sys
work, repeats, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def run(zero, np, rep):
    d = "%s/z%d-dp%d-r%d" % (work, zero, np, rep)
    rows = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"loss"' in l]
    a, b = rows[4], rows[-1]                      # after step 5 .. the last step
    tps = (b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
    stats = [json.load(open(f)) for f in sorted(glob.glob(d + ".stats.*.json"))]
    assert len(stats) == np, d
    kinds = ["all_reduce"] if zero == 0 else ["reduce_scatter", "all_gather"]
    sent = statistics.mean(sum(s["total"].get(k, {}).get("bytes_sent", 0) for k in kinds) for s in stats) / b["step"]
    grad_s = statistics.mean(sum(s["total"].get(k, {}).get("seconds", 0) for k in kinds) for s in stats)
    calls = sum(stats[0]["total"].get(k, {}).get("calls", 0) for k in kinds)
    all_s = statistics.mean(sum(v["seconds"] for v in s["total"].values() if isinstance(v, dict)) for s in stats)
    return dict(tps=tps, sent=sent, grad=grad_s / b["elapsed_s"], coll=all_s / b["elapsed_s"],
                call_ms=1e3 * grad_s / calls if calls else float("nan"),
                n=b["params_trained"], step_ms=1e3 * (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]))

print("| layout | ranks | tokens/s | ms/step | weak-scaling eff | in grad collectives | ms per grad collective "
      "| in all collectives | counted B/rank/step | analytic B/rank/step | counted / analytic |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
base = {}
for zero in (0, 1):
    for np in (1, 2, 4):
        runs = [run(zero, np, r) for r in range(1, repeats + 1)]
        med = lambda k: statistics.median(r[k] for r in runs)
        best = max(runs, key=lambda r: r["tps"])   # the least disturbed run of a shared machine
        n = runs[0]["n"]
        analytic = 2 * (np - 1) / np * n * 4 if zero == 0 else 2 * (np - 1) * math.ceil(n / np) * 4
        base.setdefault(zero, best["tps"])
        eff = best["tps"] / (np * base[zero])
        ratio = "–" if analytic == 0 else "%.6f" % (med("sent") / analytic)
        call = "–" if np == 1 else "%.1f" % med("call_ms")
        print("| %s | %d | %.0f | %.0f | %.0f%% | %.1f%% | %s | %.1f%% | %.0f | %.0f | %s |" % (
            "ZeRO-%d" % zero, np, best["tps"], best["step_ms"], 100 * eff, 100 * med("grad"), call, 100 * med("coll"),
            med("sent"), analytic, ratio))
print("| *tensor parallel (tp = 2, 4, tp x dp): rows to be added by the TP work* | | | | | | | | | | |")
print()
print("n = %d trained parameters (fp32), so one gradient all-reduce is %.1f MB." % (n, n * 4 / 1e6))
PYEOF
echo
echo "**Model of H100 nodes** (bench/scaling_model.py)"
$PY "$SRC/bench/scaling_model.py"
