#!/usr/bin/env bash
# Data-parallel training on the CPU under mpirun: for dp = 1, 2, 4 ranks (micro-batch 8/dp, so every step
# sees the same 8 sequences) with ZeRO-1 off and on, the loss at every one of 20 steps and the final
# weights equal the single-process run's to within 1e-5 relative; a checkpoint written by 2 ranks resumes
# under 1 rank and under 4 ranks on the same loss curve.
# Usage: train_dp_check.sh MODRWKV SRC MPIEXEC [MPIEXEC FLAGS...]
source "$(dirname "$0")/../clilib.sh"
MPIEXEC=$3
shift 3
MPI=("$MPIEXEC" "$@")
cd "$SRC"
cat > "$WORK/dp.yaml" <<YAML
model: {init: official, n_layer: 2, n_embd: 64, head_size: 64}
data: {train: tests/data/lambada_test.jsonl, tokenizer: bytes, val_fraction: 0.02}
train: {ctx_len: 64, micro_batch: 8, max_steps: 20, lr: 3.0e-3, lr_final: 3.0e-4, warmup_steps: 5,
        eval_every: 10, eval_batches: 4, save_every: 10, keep_checkpoints: 10, log_every: 10, threads: 1}
YAML
run() { # run NP DIR ARGS...
    local np=$1 dir=$2; shift 2
    if [ "$np" = 0 ]; then "$MODRWKV" train "$WORK/dp.yaml" --set run_dir="$dir" "$@" > "$dir.log" 2>&1
    else "${MPI[@]}" -np "$np" "$MODRWKV" train "$WORK/dp.yaml" --set run_dir="$dir" --set train.micro_batch=$((8 / np)) "$@" > "$dir.log" 2>&1
    fi
}
compare() { # compare REF_DIR DIR [FIRST_STEP]: losses and final weights within 1e-5 relative
    $PY - "$1" "$2" "${3:-1}" <<'PYEOF'
import json, struct, sys
import numpy as np
def losses(d, first):
    return {r["step"]: r["loss"] for r in map(json.loads, open(d + "/metrics.jsonl")) if "loss" in r and r["step"] >= first}
def weights(d):
    raw = open(d + "/checkpoints/step-00000020.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n]); out = {}
    for k, v in head.items():
        if k == "__metadata__" or k.startswith("optimizer."): continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4")
    return out
ref, got, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
la, lb = losses(ref, first), losses(got, first)
rel = max(abs(la[s] - lb[s]) / abs(la[s]) for s in la) if la.keys() == lb.keys() else float("inf")
wa, wb = weights(ref), weights(got)
# weights: the largest difference of any entry relative to the model's largest weight (summation order
# differs between layouts in the last bits; Adam with eps 1e-18 turns that into tiny steps on near-zero
# gradients, so tensors that start at zero show it most in a per-tensor relative measure, printed too)
scale = max(float(np.max(np.abs(w))) for w in wa.values())
wmax = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa) if wa.keys() == wb.keys() else float("inf")
wl2 = max(float(np.linalg.norm(wa[k] - wb[k]) / max(np.linalg.norm(wa[k]), 1e-30)) for k in wa) if wa.keys() == wb.keys() else float("inf")
wrel = wmax / scale
print("%s vs %s: %d steps, max relative loss difference %.2e, max weight difference %.2e of the largest weight "
      "(tol 1e-5; worst per-tensor relative L2 %.1e)" % (got.split("/")[-1], ref.split("/")[-1], len(lb), rel, wrel, wl2))
sys.exit(0 if len(lb) == 21 - first and rel <= 1e-5 and wrel <= 1e-5 else 1)
PYEOF
}
run 0 "$WORK/one"
check "single-process reference run" test -f "$WORK/one/checkpoints/step-00000020.safetensors"
for np in 1 2 4; do
    for zero in 0 1; do
        run $np "$WORK/dp$np-z$zero" --set parallel.zero=$zero
        check "mpirun -np $np, ZeRO-$zero: same losses and weights as one process" compare "$WORK/one" "$WORK/dp$np-z$zero"
    done
done
check "rank 0 alone writes the metrics (one line per step)" test "$(grep -c '"loss"' "$WORK/dp4-z1/metrics.jsonl")" = 20

# a checkpoint written by 2 ranks (ZeRO-1) resumes under 1 rank and under 4 ranks
for target in 0 4; do
    dir="$WORK/resume-to-$target"
    run 2 "$dir" --set parallel.zero=1 --stop-at-step 10
    run $target "$dir" --resume auto
    check "a dp2 ZeRO-1 checkpoint resumes under $([ $target = 0 ] && echo 1 rank || echo 4 ranks) on the same curve" \
        compare "$WORK/one" "$dir" 11
done
# a rank killed with SIGKILL mid-run: the job ends non-zero within 60 s naming the rank, the last
# checkpoint stays intact and --resume auto continues from it
"${MPI[@]}" -np 2 "$MODRWKV" train "$WORK/dp.yaml" --set run_dir="$WORK/kill" --set train.micro_batch=4 \
    --set train.max_steps=1000000 --set train.save_every=5 --set train.eval_every=0 > "$WORK/kill.log" 2>&1 &
job=$!
for _ in $(seq 1 300); do test -f "$WORK/kill/checkpoints/step-00000010.safetensors" && break; sleep 0.1; done
victim=$(pgrep -f "^$MODRWKV train .*run_dir=$WORK/kill" | sort -n | tail -n 1)
sum=$(sha256sum "$WORK/kill/checkpoints/step-00000010.safetensors" | cut -d' ' -f1)
t0=$(date +%s)
kill -KILL "$victim"
rc=0
timeout 90 tail --pid=$job -f /dev/null || true
wait $job || rc=$?
elapsed=$(( $(date +%s) - t0 ))
grep -E "rank|signal" "$WORK/kill.log" | grep -v "^step" | head -n 3
check "killing one rank ends the job non-zero in ${elapsed} s (< 60 s) with a message naming the rank" bash -c \
    "test $rc != 0 && test $elapsed -lt 60 && grep -qiE 'rank [0-9]+.*(signal|exited|died|timed out)|process rank [0-9]' '$WORK/kill.log'"
check "the checkpoint written before the kill is intact" \
    test "$(sha256sum "$WORK/kill/checkpoints/step-00000010.safetensors" | cut -d' ' -f1)" = "$sum"
latest=$(ls "$WORK/kill/checkpoints" | grep -v tmp | sort | tail -n 1 | sed 's/step-0*\([0-9]*\).safetensors/\1/')
"${MPI[@]}" -np 2 "$MODRWKV" train "$WORK/dp.yaml" --set run_dir="$WORK/kill" --set train.micro_batch=4 \
    --set train.max_steps=$((latest + 2)) --set train.eval_every=0 --resume auto > "$WORK/kill-resume.log" 2>&1
check "--resume auto continues after the kill (from step $latest)" \
    test -f "$WORK/kill/checkpoints/step-$(printf %08d $((latest + 2))).safetensors"

bad_layout() { # every rank names the mismatch and the job exits non-zero
    local rc=0
    "${MPI[@]}" -np 2 "$MODRWKV" train "$WORK/dp.yaml" --set run_dir="$WORK/bad" --set parallel.dp=3 > "$WORK/bad.out" 2>&1 || rc=$?
    grep "modrwkv: error:" "$WORK/bad.out"
    [ "$rc" != 0 ] && [ "$(grep -c 'modrwkv: error: rank [01]: parallel.dp = 3 but the job has 2 ranks' "$WORK/bad.out")" = 2 ]
}
check "parallel.dp that does not match the job: a one-line error on every rank, non-zero exit" bad_layout
finish
