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
    $PY "$SRC/tests/mpi/compare_runs.py" "$1" "$2" "${3:-1}" 20
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
    [ "$rc" != 0 ] && [ "$(grep -c 'modrwkv: error: rank [01]: parallel.tp x parallel.dp = 1 x 3 = 3 ranks, but the job has 2' "$WORK/bad.out")" = 2 ]
}
check "parallel.dp that does not match the job: a one-line error on every rank, non-zero exit" bad_layout
finish
