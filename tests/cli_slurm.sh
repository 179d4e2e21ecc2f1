#!/usr/bin/env bash
# `modrwkv slurm submit` and `modrwkv sweep submit` without a cluster (tests/slurm/slurm_cluster_check.sh runs
# them on a real one): stand-in sbatch and squeue programs on PATH record their arguments and answer job ids.
# - --dry-run scripts carry the right #SBATCH lines: a 2-node GPU job (ranks per node = GPUs, --gpus-per-node,
#   partition/time/account, the time-limit signal, requeue, output under the run directory, srun --mpi=pmix)
#   and a CPU job (no GPU line, ranks from --tasks-per-node, no optional lines); no placeholder is left and
#   bash accepts the script; nothing is created;
# - a bad config, an unknown key, bad resource values and a missing sbatch are one-line errors before anything
#   is submitted (no run directory, no sbatch call);
# - a submission writes job.sbatch and job-config.yaml (which loads back), calls `sbatch --parsable` and prints
#   the job id and the run directory;
# - sweep submit: --array=0-(N-1)%K, the report job with --dependency=afterany:<array job>, jobs.json with both
#   ids and the run ids; `sweep status` shows the queue states squeue reports; a run whose config is invalid
#   stops the submission; `sweep run --index I` trains exactly run I.
source "$(dirname "$0")/clilib.sh"
cd "$SRC"
mkdir -p "$WORK/bin" "$WORK/empty"
cat > "$WORK/tiny.yaml" <<YAML
model: {init: official, n_layer: 1, n_embd: 64, head_size: 64}
data: {train: tests/data/lambada_test.jsonl, tokenizer: bytes, val_fraction: 0.02}
train: {ctx_len: 32, micro_batch: 2, max_steps: 3, warmup_steps: 1, eval_every: 3, eval_batches: 1,
        save_every: 3, log_every: 1, threads: 1}
YAML
cat > "$WORK/sweep.yaml" <<YAML
name: lrs
base: tiny.yaml
runs_dir: $WORK/runs
grid:
  train.lr: [1.0e-3, 2.0e-3, 3.0e-3]
YAML
# stand-in sbatch: one line of arguments per call in sbatch.calls, job ids 4242, 4243, ... ("ID;cluster")
cat > "$WORK/bin/sbatch" <<EOF
#!/bin/bash
echo "\$*" >> "$WORK/sbatch.calls"
n=\$(wc -l < "$WORK/sbatch.calls")
echo "\$((4241 + n));testcluster"
EOF
# stand-in squeue: array job 4242 has elements 1 (running) and 2 (pending) queued; the report job 4243 waits
cat > "$WORK/bin/squeue" <<EOF
#!/bin/bash
case "\$*" in
  *"-j 4242"*) printf '4242_1 RUNNING\n4242_2 PENDING\n' ;;
  *"-j 4243"*) echo "4243 PENDING" ;;
  *"-j 9999"*) echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2; exit 1 ;;
  *) echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1 ;;
esac
EOF
chmod +x "$WORK/bin/sbatch" "$WORK/bin/squeue"
FAKE_PATH="$WORK/bin:/usr/bin:/bin"
S="$MODRWKV slurm submit"

has_line() { grep -qxF -- "$2" "$1"; }   # has_line FILE LINE: the exact line is in the file
no_placeholder_left() { ! grep -qE '@[A-Z_0-9]+@' "$1"; }

# ---- help
check "slurm --help and slurm submit --help print the usage" \
    bash -c "'$MODRWKV' slurm --help | grep -q 'usage: modrwkv slurm submit' && '$MODRWKV' slurm submit --help | grep -q -- '--gpus-per-node'"
check "sweep submit --help prints its usage" bash -c "'$MODRWKV' sweep submit --help | grep -q -- '--max-parallel'"

# ---- dry run: multi-node GPU job
$S "$WORK/tiny.yaml" --nodes 2 --gpus-per-node 4 --partition gpu --time 02:00:00 --account proj1 \
    --run-dir "$WORK/gpu-run" --dry-run > "$WORK/gpu.sbatch" 2> "$WORK/gpu.err"
check "GPU dry run: exit 0, nothing created" bash -c "test -s '$WORK/gpu.sbatch' && test ! -e '$WORK/gpu-run'"
check "GPU: --nodes=2, 4 ranks per node (one per GPU), --gpus-per-node=4" bash -c \
    "grep -qx '#SBATCH --nodes=2' '$WORK/gpu.sbatch' && grep -qx '#SBATCH --ntasks-per-node=4' '$WORK/gpu.sbatch' && \
     grep -qx '#SBATCH --gpus-per-node=4' '$WORK/gpu.sbatch'"
check "GPU: partition, time and account lines" bash -c \
    "grep -qx '#SBATCH --partition=gpu' '$WORK/gpu.sbatch' && grep -qx '#SBATCH --time=02:00:00' '$WORK/gpu.sbatch' && \
     grep -qx '#SBATCH --account=proj1' '$WORK/gpu.sbatch'"
check "GPU: SIGUSR1 300 s before the limit, requeue, output and error files in the run directory" bash -c \
    "grep -qx '#SBATCH --signal=B:USR1@300' '$WORK/gpu.sbatch' && grep -qx '#SBATCH --requeue' '$WORK/gpu.sbatch' && \
     grep -qx '#SBATCH --output=$WORK/gpu-run/slurm-%j.out' '$WORK/gpu.sbatch' && \
     grep -qx '#SBATCH --error=$WORK/gpu-run/slurm-%j.err' '$WORK/gpu.sbatch'"
check "GPU: every rank starts through srun --mpi=pmix and trains with --resume auto" bash -c \
    "grep -qx 'LAUNCHER=(srun --mpi=pmix --kill-on-bad-exit=1)' '$WORK/gpu.sbatch' && \
     grep -q '\"\${LAUNCHER\[@\]}\" \"\$MODRWKV\" train \"\$CONFIG\" --set run_dir=\"\$RUN_DIR\" --resume auto &' '$WORK/gpu.sbatch' && \
     grep -qx \"RUN_DIR='$WORK/gpu-run'\" '$WORK/gpu.sbatch' && grep -qx \"CONFIG='$WORK/gpu-run/job-config.yaml'\" '$WORK/gpu.sbatch'"
check "GPU: the SIGUSR1 is forwarded to the step, and the job requeued after the checkpoint" bash -c \
    "grep -q 'kill -USR1 \"\$step\"' '$WORK/gpu.sbatch' && grep -q 'scontrol requeue \"\$SLURM_JOB_ID\"' '$WORK/gpu.sbatch'"
check "GPU: no placeholder left, bash -n accepts the script" \
    bash -c "! grep -qE '@[A-Z_0-9]+@' '$WORK/gpu.sbatch' && bash -n '$WORK/gpu.sbatch'"

# ---- dry run: CPU partition
$S "$WORK/tiny.yaml" --nodes 1 --tasks-per-node 2 --run-dir "$WORK/cpu-run" --dry-run > "$WORK/cpu.sbatch"
check "CPU: no --gpus-per-node line, 2 ranks per node, one node" bash -c \
    "! grep -q '^#SBATCH --gpus-per-node' '$WORK/cpu.sbatch' && grep -qx '#SBATCH --ntasks-per-node=2' '$WORK/cpu.sbatch' && \
     grep -qx '#SBATCH --nodes=1' '$WORK/cpu.sbatch'"
check "CPU: no partition, time or account line when not asked for; no placeholder left" bash -c \
    "! grep -qE '^#SBATCH --(partition|time|account)' '$WORK/cpu.sbatch' && ! grep -qE '@[A-Z_0-9]+@' '$WORK/cpu.sbatch' \
     && ! grep -q '^\$' <(grep '^#SBATCH' '$WORK/cpu.sbatch')"
$S "$WORK/tiny.yaml" --gpus-per-node 8 --cpus-per-task 12 --mpi mpirun --signal-before 120 --run-dir "$WORK/r" --dry-run > "$WORK/mpirun.sbatch"
check "--gpus-per-node 8 alone: 8 ranks per node; --cpus-per-task, --signal-before and --mpi mpirun" bash -c \
    "grep -qx '#SBATCH --ntasks-per-node=8' '$WORK/mpirun.sbatch' && grep -qx '#SBATCH --cpus-per-task=12' '$WORK/mpirun.sbatch' && \
     grep -qx '#SBATCH --signal=B:USR1@120' '$WORK/mpirun.sbatch' && grep -qx 'LAUNCHER=(mpirun)' '$WORK/mpirun.sbatch'"
printf '#SBATCH --nodes=@NODES@\n#SBATCH --bogus=@NOT_A_PLACEHOLDER@\n' > "$WORK/bad.sbatch"
expect_error "a template with an unknown placeholder names the file and line" "bad.sbatch:2: unknown placeholder @NOT_A_PLACEHOLDER@" \
    $S "$WORK/tiny.yaml" --template "$WORK/bad.sbatch" --dry-run

# ---- errors before submission (the stand-in sbatch must not be called, no run directory appears)
rm -f "$WORK/sbatch.calls"
expect_error "a config that does not validate is rejected before submission" "n_embd" \
    env PATH="$FAKE_PATH" $S "$WORK/tiny.yaml" --set model.n_embd=100 --run-dir "$WORK/never1"
expect_error "an unknown key of --set is rejected before submission" "train.no_such_key" \
    env PATH="$FAKE_PATH" $S "$WORK/tiny.yaml" --set train.no_such_key=1 --run-dir "$WORK/never2"
printf 'train: {lr: 1.0e-3, learning_rte: 2}\n' > "$WORK/typo.yaml"
expect_error "an unknown key in the file names the file, line and key" "typo.yaml:1" \
    env PATH="$FAKE_PATH" $S "$WORK/typo.yaml" --run-dir "$WORK/never3"
expect_error "a missing config file" "nothere.yaml" env PATH="$FAKE_PATH" $S "$WORK/nothere.yaml"
expect_error "--nodes 0" "--nodes must be at least 1" $S "$WORK/tiny.yaml" --nodes 0 --dry-run
expect_error "--time in a form Slurm does not read" "--time '1 day'" $S "$WORK/tiny.yaml" --time "1 day" --dry-run
expect_error "a partition name #SBATCH cannot carry" "--partition 'gpu;rm'" $S "$WORK/tiny.yaml" --partition "gpu;rm" --dry-run
expect_error "--mpi none with 2 ranks" "--mpi none starts 2 independent processes" \
    $S "$WORK/tiny.yaml" --tasks-per-node 2 --mpi none --dry-run
expect_error "an unknown --mpi" "--mpi must be pmix, pmi2, none or mpirun" $S "$WORK/tiny.yaml" --mpi openmpi --dry-run
expect_error "an unknown option" "unknown option" $S "$WORK/tiny.yaml" --gres gpu:2 --dry-run
expect_error "sbatch missing from PATH" "sbatch not found: install Slurm's client or use --dry-run" \
    env PATH="$WORK/empty" $S "$WORK/tiny.yaml" --run-dir "$WORK/never4"
mkdir -p "$WORK/badbin"
printf '#!/bin/bash\necho "sbatch: error: invalid partition specified: nosuch" >&2\nexit 1\n' > "$WORK/badbin/sbatch"
chmod +x "$WORK/badbin/sbatch"
expect_error "sbatch refusing the job: its exit status and message on the one error line" \
    "failed (exit status 1): sbatch: error: invalid partition specified: nosuch" \
    env PATH="$WORK/badbin:/usr/bin:/bin" $S "$WORK/tiny.yaml" --partition nosuch --run-dir "$WORK/refused"
check "none of the rejected submissions called sbatch or created its run directory" \
    bash -c "test ! -e '$WORK/sbatch.calls' && ! ls -d '$WORK'/never* 2> /dev/null"

# ---- a submission through the stand-in sbatch
(cd "$WORK" && env PATH="$FAKE_PATH" $S tiny.yaml --nodes 1 --tasks-per-node 2 --run-dir runs/one > "$WORK/submit.out" 2>&1)
cat "$WORK/submit.out"
check "submit prints the job id and the absolute run directory" bash -c \
    "grep -qx 'submitted job 4242' '$WORK/submit.out' && grep -qx 'run directory: $WORK/runs/one' '$WORK/submit.out'"
check "sbatch was called once as: sbatch --parsable RUN/job.sbatch" \
    has_line "$WORK/sbatch.calls" "--parsable $WORK/runs/one/job.sbatch"
(cd "$WORK" && $S tiny.yaml --nodes 1 --tasks-per-node 2 --run-dir runs/one --dry-run > "$WORK/one-dry.sbatch")
check "job.sbatch is the script --dry-run prints" cmp "$WORK/runs/one/job.sbatch" "$WORK/one-dry.sbatch"
check "job-config.yaml (the frozen config) loads back, with the absolute run directory" bash -c \
    "'$MODRWKV' config show '$WORK/runs/one/job-config.yaml' | grep -q '^run_dir: $WORK/runs/one'"
rm -f "$WORK/sbatch.calls"

# ---- sweep submit
SW="$MODRWKV sweep submit"
$SW "$WORK/sweep.yaml" --max-parallel 2 --dry-run > "$WORK/sweep-dry.txt"
check "sweep dry run: the array covers runs 0-2, at most 2 at once; each element runs its index" bash -c \
    "grep -qx '#SBATCH --array=0-2%2' '$WORK/sweep-dry.txt' && \
     grep -q '\"\$MODRWKV\" sweep run \"\$SWEEP\" --index \"\$SLURM_ARRAY_TASK_ID\" &' '$WORK/sweep-dry.txt' && \
     grep -qx \"SWEEP='$WORK/sweep.yaml'\" '$WORK/sweep-dry.txt'"
check "sweep dry run: the report job depends on the array (afterany) and reports runs/<sweep>" bash -c \
    "grep -qx '# report job: sbatch --parsable --dependency=afterany:<array job id> $WORK/runs/lrs/slurm/report.sbatch' '$WORK/sweep-dry.txt' && \
     grep -qx 'exec \"\$MODRWKV\" report \"\$SWEEP_DIR\"' '$WORK/sweep-dry.txt' && grep -qx \"SWEEP_DIR='$WORK/runs/lrs'\" '$WORK/sweep-dry.txt'"
check "sweep dry run: no placeholder left, both scripts pass bash -n, nothing created" bash -c \
    "! grep -qE '@[A-Z_0-9]+@' '$WORK/sweep-dry.txt' && bash -n '$WORK/sweep-dry.txt' && test ! -e '$WORK/runs/lrs'"
$SW "$WORK/sweep.yaml" --no-report --gpus-per-node 1 --dry-run > "$WORK/sweep-dry2.txt"
check "sweep dry run without --max-parallel: --array=0-2; --no-report: no report job; one GPU per run" bash -c \
    "grep -qx '#SBATCH --array=0-2' '$WORK/sweep-dry2.txt' && ! grep -q 'report job' '$WORK/sweep-dry2.txt' && \
     grep -qx '#SBATCH --gpus-per-node=1' '$WORK/sweep-dry2.txt'"
env PATH="$FAKE_PATH" $SW "$WORK/sweep.yaml" --max-parallel 2 --time 30 > "$WORK/sweep-submit.out" 2>&1
cat "$WORK/sweep-submit.out"
check "sweep submit prints both job ids" bash -c \
    "grep -q 'submitted as array job 4242' '$WORK/sweep-submit.out' && grep -q 'report job 4243 runs after array job 4242' '$WORK/sweep-submit.out'"
check "sbatch calls: the array script, then the report script with --dependency=afterany:4242" bash -c \
    "test \"\$(cat '$WORK/sbatch.calls')\" = \"--parsable $WORK/runs/lrs/slurm/array.sbatch
--parsable --dependency=afterany:4242 $WORK/runs/lrs/slurm/report.sbatch\""
"$MODRWKV" sweep expand "$WORK/sweep.yaml" | cut -d' ' -f1 > "$WORK/expand.txt"
check "jobs.json holds both job ids and the run ids in the order of sweep expand" $PY - "$WORK" <<'PYEOF'
import json, sys
w = sys.argv[1]
j = json.load(open(w + "/runs/lrs/slurm/jobs.json"))
expanded = open(w + "/expand.txt").read().split()
print("jobs.json:", j)
sys.exit(0 if j["array_job"] == "4242" and j["report_job"] == "4243" and j["n_runs"] == 3 and j["runs"] == expanded else 1)
PYEOF
check "the array script has the time limit of each element" has_line "$WORK/runs/lrs/slurm/array.sbatch" "#SBATCH --time=30"
env PATH="$FAKE_PATH" "$MODRWKV" sweep status "$WORK/sweep.yaml" > "$WORK/status.txt"
cat "$WORK/status.txt"
second=$(sed -n 2p "$WORK/expand.txt")
third=$(sed -n 3p "$WORK/expand.txt")
check "sweep status: the queued elements with their run ids and squeue's states, and the report job" bash -c \
    "grep -qE '^  4242_1 +RUNNING +$second\$' '$WORK/status.txt' && grep -qE '^  4242_2 +PENDING +$third\$' '$WORK/status.txt' && \
     grep -qE '^  4243 +PENDING +report\$' '$WORK/status.txt'"
env PATH="$WORK/empty" "$MODRWKV" sweep status "$WORK/sweep.yaml" > "$WORK/status2.txt"
check "sweep status without squeue says so" grep -q "squeue not found" "$WORK/status2.txt"
cp "$WORK/runs/lrs/slurm/jobs.json" "$WORK/jobs.json.saved"
sed -i -e 's/"4242"/"4000"/' -e 's/"4243"/"9999"/' "$WORK/runs/lrs/slurm/jobs.json"
env PATH="$FAKE_PATH" "$MODRWKV" sweep status "$WORK/sweep.yaml" > "$WORK/status3.txt"
tail -n 3 "$WORK/status3.txt"
check "sweep status: a job Slurm has forgotten is no longer queued; a squeue failure is shown with its message" bash -c \
    "grep -q 'no element of array job 4000 is queued or running' '$WORK/status3.txt' && \
     grep -q 'squeue failed for the report job: slurm_load_jobs error: Unable to contact slurm controller' '$WORK/status3.txt'"
cp "$WORK/jobs.json.saved" "$WORK/runs/lrs/slurm/jobs.json"

rm -f "$WORK/sbatch.calls"
sed -e 's/name: lrs/name: broken/' -e 's/train.lr: \[.*\]/model.n_embd: [64, 100]/' "$WORK/sweep.yaml" > "$WORK/broken.yaml"
expect_error "a sweep with a run whose config does not validate is not submitted (the run is named)" "run 1" \
    env PATH="$FAKE_PATH" $SW "$WORK/broken.yaml"
env PATH="$FAKE_PATH" $SW "$WORK/sweep.yaml" --nodes 2 --tasks-per-node 4 --mpi pmix --dry-run > "$WORK/multi.txt"
check "sweep submit --nodes 2 --tasks-per-node 4: every element asks for 2 x 4 ranks and launches the run on all of them" \
    bash -c "grep -qx '#SBATCH --nodes=2' '$WORK/multi.txt' && grep -qx '#SBATCH --ntasks-per-node=4' '$WORK/multi.txt' && \
             grep -qx 'LAUNCHER=(srun --mpi=pmix --kill-on-bad-exit=1)' '$WORK/multi.txt'"
expect_error "sweep submit without sbatch" "sbatch not found" env PATH="$WORK/empty" $SW "$WORK/sweep.yaml"
check "no sbatch call for the rejected sweeps" test ! -e "$WORK/sbatch.calls"

# ---- sweep run --index
expect_error "--index outside the sweep" "--index 3 is not a run of the sweep (0 to 2" \
    "$MODRWKV" sweep run "$WORK/sweep.yaml" --index 3
"$MODRWKV" sweep run "$WORK/sweep.yaml" --index 1 > "$WORK/index1.txt" 2>&1
check "sweep run --index 1 trains run 1 only (DONE there, the others untouched)" bash -c \
    "test -f '$WORK/runs/lrs/$second/DONE' && test ! -e '$WORK/runs/lrs/$(sed -n 1p "$WORK/expand.txt")' && \
     test ! -e '$WORK/runs/lrs/$third'"
"$MODRWKV" sweep run "$WORK/sweep.yaml" --index 1 > "$WORK/index1b.txt" 2>&1
check "again: the finished run is skipped" grep -q "1 runs, 1 skipped (already done)" "$WORK/index1b.txt"
finish
