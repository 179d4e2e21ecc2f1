#!/usr/bin/env bash
# A real Slurm cluster on localhost (Debian's munge, slurmctld and slurmd, configured in a temporary directory:
# cons_tres, linuxproc process tracking, no cgroups, PMIx), and modrwkv's Slurm commands run on it:
# (a) `modrwkv slurm submit` of a 2-rank CPU training run: the job COMPLETES, every metrics line reports
#     world 2 (both ranks joined one MPI world under srun), the final checkpoint exists; a partition the
#     cluster does not have is sbatch's refusal on one error line;
# (b) `modrwkv sweep submit` of a 3-run sweep (train.lr) as a job array (at most 2 at once, each element a
#     2-rank job whose run trains on both ranks) plus the dependent report job: every element and the report
#     job COMPLETE, the 3 runs have DONE and were trained by a world of 2, report.md exists, and
#     `sweep status` shows the finished runs and no queued element;
# (c) the time-limit path: SIGUSR1 sent to the batch script (as --signal=B:USR1@300 does) makes the ranks
#     checkpoint and stop, the job requeues itself, and its next start resumes from that checkpoint and
#     finishes the run.
# Every daemon is stopped at exit. Without root, or without the Slurm/munge daemons installed
# (scripts/install-deps.sh installs them), it prints "SKIP: reason" and exits 77.
# Usage: slurm_cluster_check.sh MODRWKV SRC [LAUNCHER]   (LAUNCHER: pmix or mpirun, the `--mpi` of the jobs;
# default pmix when `srun --mpi=list` offers it, else mpirun)
set -u
if [ "$(id -u)" != 0 ]; then echo "SKIP: a local Slurm cluster needs root (slurmd runs jobs as any user)"; exit 77; fi
for prog in munged slurmctld slurmd sbatch srun squeue scontrol sinfo scancel; do
    if ! command -v "$prog" > /dev/null 2>&1 && [ ! -x "/usr/sbin/$prog" ]; then
        echo "SKIP: $prog not found (apt-get install slurm-wlm munge; see scripts/install-deps.sh)"
        exit 77
    fi
done
export PATH="$PATH:/usr/sbin"
source "$(dirname "$0")/../clilib.sh"
CL="$WORK/cluster"
mkdir -p "$CL/state" "$CL/spool" "$CL/munge" "$WORK/runs"
chmod 755 "$WORK" "$CL" "$CL/munge"
export SLURM_CONF="$CL/slurm.conf"
# Open MPI inside the jobs: shared memory between the ranks of the node, no CMA (container seccomp rules)
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

stop_cluster() {
    if [ -f "$CL/slurmctld.pid" ]; then
        scancel --quiet --user=root > /dev/null 2>&1
        sleep 1
        scontrol shutdown > /dev/null 2>&1
        sleep 1
    fi
    for pidfile in "$CL/slurmd.pid" "$CL/slurmctld.pid" "$CL/munge/munged.pid"; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2> /dev/null
    done
    sleep 0.5
    rm -rf "$WORK"
}
trap stop_cluster EXIT

show_logs() { # the daemons' last words, when something failed
    for f in "$CL/slurmctld.log" "$CL/slurmd.log" "$CL/munge/munged.log"; do
        [ -f "$f" ] && { echo "---- $f"; tail -n 15 "$f"; }
    done
}

free_port() { # a TCP port nothing listens on, from START upwards
    local p=$1
    while (echo > "/dev/tcp/127.0.0.1/$p") 2> /dev/null; do p=$((p + 1)); done
    echo "$p"
}

# ---- the cluster
# the node as slurmd sees the hardware (a node configured larger than that is drained)
HW=$(slurmd -C 2> /dev/null | head -n 1)
CPUS=$(echo "$HW" | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
MEM=$(echo "$HW" | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p')
[ -n "$CPUS" ] || CPUS=$(getconf _NPROCESSORS_ONLN)
[ -n "$MEM" ] || MEM=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
MEM=$((MEM * 9 / 10))
if [ "$CPUS" -lt 2 ]; then echo "SKIP: the 2-rank job needs 2 CPUs, this machine has $CPUS"; exit 77; fi
CTLD_PORT=$(free_port $((21000 + $$ % 9000)))
SLURMD_PORT=$(free_port $((CTLD_PORT + 1)))
MPI_DEFAULT=none
for plugin in /usr/lib/*/slurm-wlm/mpi_pmix.so /usr/lib*/slurm/mpi_pmix.so; do [ -e "$plugin" ] && MPI_DEFAULT=pmix; done
cat > "$SLURM_CONF" <<EOF
ClusterName=modrwkvtest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$CL/munge/munge.socket
StateSaveLocation=$CL/state
SlurmdSpoolDir=$CL/spool
SlurmctldPidFile=$CL/slurmctld.pid
SlurmdPidFile=$CL/slurmd.pid
SlurmctldLogFile=$CL/slurmctld.log
SlurmdLogFile=$CL/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=$MPI_DEFAULT
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SwitchType=switch/none
MinJobAge=600
NodeName=localhost CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
head -c 1024 /dev/urandom > "$CL/munge/munge.key"
chmod 600 "$CL/munge/munge.key"
munged --force --socket="$CL/munge/munge.socket" --key-file="$CL/munge/munge.key" \
    --pid-file="$CL/munge/munged.pid" --log-file="$CL/munge/munged.log" --seed-file="$CL/munge/munged.seed"
slurmctld -f "$SLURM_CONF" && slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 1 60); do
    [ "$(sinfo -h -n localhost -o %t 2> /dev/null)" = idle ] && break
    sleep 0.5
done
state=$(sinfo -h -n localhost -o %t 2> /dev/null)
echo "cluster: slurmctld port $CTLD_PORT, slurmd port $SLURMD_PORT, $CPUS CPUs, MpiDefault=$MPI_DEFAULT, node state '$state'"
if [ "$state" != idle ]; then
    fail "the local cluster came up (sinfo shows the node idle)"
    show_logs
    finish
    exit 1
fi
pass "the local cluster came up (sinfo shows the node idle)"
# How the ranks start: srun --mpi=pmix when this Slurm has PMIx (Debian's Open MPI 4.1 + Slurm 22.05 do),
# else Open MPI's mpirun inside the allocation.
MPI_MODE=mpirun
srun --mpi=list 2>&1 | grep -qw pmix && MPI_MODE=pmix
[ -n "${3:-}" ] && MPI_MODE=$3
echo "launcher: --mpi $MPI_MODE ($(srun --mpi=list 2>&1 | tr '\n' ' '))"

wait_gone() { # wait_gone SECONDS JOBID...: until no job of the list is pending or running
    local limit=$1; shift
    local ids
    ids=$(IFS=,; echo "$*")
    [ -n "$ids" ] || return 1
    for _ in $(seq 1 $((limit * 2))); do
        [ -z "$(squeue -h -j "$ids" 2> /dev/null)" ] && return 0
        sleep 0.5
    done
    echo "still queued after $limit s:"; squeue -j "$ids"
    return 1
}
all_completed() { # every job (or array element) of the id is COMPLETED with exit code 0:0
    local lines
    lines=$(scontrol -o show job "$1")
    echo "$lines" | grep -oE "JobId=[0-9]+ (ArrayJobId=[0-9]+ ArrayTaskId=[0-9]+ )?|JobState=[A-Z_]+|ExitCode=[0-9:]+" | paste -sd' '
    [ -n "$lines" ] && ! echo "$lines" | grep -v "JobState=COMPLETED" | grep -q . && ! echo "$lines" | grep -v "ExitCode=0:0" | grep -q .
}

has_checkpoint() { # has_checkpoint RUN_DIR STEP: a whole-model file or a sharded checkpoint of that step
    local base
    base="$1/checkpoints/step-$(printf %08d "$2")"
    test -e "$base.safetensors" -o -e "$base.shards"
}

cd "$SRC"
cat > "$WORK/dp.yaml" <<YAML
model: {init: official, n_layer: 2, n_embd: 64, head_size: 64}
data: {train: tests/data/lambada_test.jsonl, tokenizer: bytes, val_fraction: 0.02}
train: {ctx_len: 64, micro_batch: 4, max_steps: 6, lr: 3.0e-3, warmup_steps: 2, eval_every: 3, eval_batches: 2,
        save_every: 3, keep_checkpoints: 10, log_every: 1, threads: 1}
YAML

# ---- (a) a 2-rank training run
"$MODRWKV" slurm submit "$WORK/dp.yaml" --nodes 1 --tasks-per-node 2 --mpi "$MPI_MODE" --run-dir "$WORK/runs/dp2" \
    > "$WORK/submit.out" 2>&1
cat "$WORK/submit.out"
job=$(sed -n 's/^submitted job \([0-9]*\)$/\1/p' "$WORK/submit.out")
check "slurm submit printed a job id" test -n "$job"
check "the training job left the queue within 60 s" wait_gone 60 "$job"
check "the training job COMPLETED with exit code 0" all_completed "$job"
cat "$WORK/runs/dp2/slurm-$job.err" 2> /dev/null | head -n 20
grep -vE "^step " "$WORK/runs/dp2/slurm-$job.out" 2> /dev/null | head -n 12
check "metrics.jsonl: every training step logged by a world of 2 ranks" $PY - "$WORK/runs/dp2/metrics.jsonl" <<'PYEOF'
import json, sys
steps = [r for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
print("steps %s, world %s" % ([r["step"] for r in steps], sorted({r.get("world") for r in steps})))
sys.exit(0 if len(steps) == 6 and all(r.get("world") == 2 for r in steps) else 1)
PYEOF
check "the final checkpoint exists" has_checkpoint "$WORK/runs/dp2" 6

expect_error "a partition the cluster does not have: sbatch's refusal on one line" "invalid partition" \
    "$MODRWKV" slurm submit "$WORK/dp.yaml" --partition nosuch --run-dir "$WORK/runs/refused"

# ---- (b) a 3-run sweep as a job array, then the report job
cat > "$WORK/sweep.yaml" <<YAML
name: lr-sweep
base: dp.yaml
runs_dir: $WORK/runs
set: {train.max_steps: 4, train.micro_batch: 2, train.eval_every: 2, train.save_every: 2}
grid:
  train.lr: [1.0e-3, 3.0e-3, 1.0e-2]
YAML
"$MODRWKV" sweep submit "$WORK/sweep.yaml" --max-parallel 2 --tasks-per-node 2 --mpi "$MPI_MODE" \
    > "$WORK/sweep-submit.out" 2>&1
cat "$WORK/sweep-submit.out"
array=$(sed -n 's/.*submitted as array job \([0-9]*\).*/\1/p' "$WORK/sweep-submit.out")
report=$(sed -n 's/^report job \([0-9]*\) runs after.*/\1/p' "$WORK/sweep-submit.out")
check "sweep submit printed the array job id and the report job id" test -n "$array" -a -n "$report"
check "the array and the report job left the queue within 180 s" wait_gone 180 "$array" "$report"
check "every array element COMPLETED with exit code 0" all_completed "$array"
check "the report job COMPLETED with exit code 0 after them" all_completed "$report"
check "3 runs have DONE" test "$(ls "$WORK"/runs/lr-sweep/*/DONE 2> /dev/null | wc -l)" = 3
check "every run of the sweep trained on the element's 2 ranks (world 2 in its metrics)" bash -c \
    "test \$(grep -l '\"world\":2' '$WORK'/runs/lr-sweep/*/metrics.jsonl | wc -l) = 3"
check "report.md and report.html were written by the report job" \
    test -s "$WORK/runs/lr-sweep/report.md" -a -s "$WORK/runs/lr-sweep/report.html"
"$MODRWKV" sweep status "$WORK/sweep.yaml" > "$WORK/status.txt" 2>&1
cat "$WORK/status.txt"
check "sweep status: 3 runs done, no element queued, the report job gone" bash -c \
    "test \$(grep -c ' done ' '$WORK/status.txt') = 3 && grep -q 'no element of array job $array is queued or running' '$WORK/status.txt' \
     && grep -q 'report job $report is no longer queued' '$WORK/status.txt'"

# ---- (c) SIGUSR1 before the time limit: checkpoint, requeue, resume
"$MODRWKV" slurm submit "$WORK/dp.yaml" --tasks-per-node 2 --mpi "$MPI_MODE" --run-dir "$WORK/runs/requeue" \
    --set train.max_steps=600 --set train.micro_batch=1 --set train.ctx_len=16 --set train.save_every=20 \
    --set train.eval_every=0 --set train.log_every=100 > "$WORK/submit2.out" 2>&1
job2=$(sed -n 's/^submitted job \([0-9]*\)$/\1/p' "$WORK/submit2.out")
check "slurm submit printed a job id (the long run)" test -n "$job2"
for _ in $(seq 1 600); do has_checkpoint "$WORK/runs/requeue" 20 && break; sleep 0.1; done
check "the long run wrote its first checkpoint within 60 s" has_checkpoint "$WORK/runs/requeue" 20
if [ -n "$job2" ] && scancel --batch --signal=USR1 "$job2"; then
    for _ in $(seq 1 60); do scontrol -o show job "$job2" | grep -q "Restarts=1" && break; sleep 0.5; done
    # a requeued job waits ~2 minutes before it may start again; starting it at once is fine once slurmd has
    # revoked the first start's credential (within the same second the new start would be refused as well)
    sleep 3
    scontrol update jobid="$job2" StartTime=now
fi
check "the requeued run finished within 120 s" wait_gone 120 "$job2"
out2="$WORK/runs/requeue/slurm-$job2.out"
grep -E "^(modrwkv:|resume:|stopped|done:)" "$out2" 2> /dev/null
stopped=$(sed -n 's/^stopped after step \([0-9]*\) as asked.*/\1/p' "$out2" 2> /dev/null | head -n 1)
check "SIGUSR1 to the batch script reached the ranks: they stopped early (after step ${stopped:-?} of 600) and the script requeued the job" \
    bash -c "test -n '$stopped' && test '${stopped:-0}' -lt 600 && grep -q 'requeueing job $job2' '$out2'"
check "the job requeued itself (Restarts=1) and COMPLETED" bash -c \
    "scontrol -o show job $job2 | grep -q 'Restarts=1' && scontrol -o show job $job2 | grep -q 'JobState=COMPLETED'"
check "the second start resumed from the checkpoint of that step and finished the run" bash -c \
    "grep -qE 'resume: .*step-$(printf %08d "${stopped:-0}")\.(safetensors|shards)/? \(step ${stopped:-x},' '$out2' && \
     test -e '$WORK/runs/requeue/checkpoints/step-00000600.safetensors' -o -e '$WORK/runs/requeue/checkpoints/step-00000600.shards'"
[ "$FAILED" = 0 ] || show_logs
finish
