#!/usr/bin/env bash
# `modrwkv sweep` and `modrwkv config` end to end on real text (LAMBADA passages, byte tokenizer, tiny model):
# - a 2x2 grid sweep of 3-step runs runs every run and marks it DONE (output in each run's train.log); `sweep expand` lists the same ids;
# - running it again skips every run (the output says so);
# - a run whose final checkpoint and DONE are removed (as if killed after step 2) resumes from step 2;
# - a sweep killed with SIGKILL in the middle continues where it stopped and finishes every run;
# - SIGUSR1 (Slurm's warning before a time limit) checkpoints the running run, which gets no DONE, and stops
#   the sweep; running it again resumes that run;
# - `sweep run --jobs 2` runs the 4 runs two at a time (their training overlaps) and marks all DONE;
# - `sweep status` lists all runs with their state; each run dir has config.yaml, sweep.json, metrics.jsonl;
# - `config show` of a file with extends prints the merged values, `config schema` lists the keys;
# - bad sweep files are one-line errors naming file, line and key.
source "$(dirname "$0")/clilib.sh"
cd "$SRC"
mkdir -p "$WORK/cfg"
cat > "$WORK/common.yaml" <<YAML
model: {init: official, n_layer: 1, n_embd: 64, head_size: 64}
data: {train: tests/data/lambada_test.jsonl, tokenizer: bytes, val_fraction: 0.02}
train: {ctx_len: 32, micro_batch: 2, max_steps: 100, warmup_steps: 1, eval_every: 3, eval_batches: 1,
        save_every: 1, keep_checkpoints: 10, log_every: 1, threads: 1}
YAML
cat > "$WORK/cfg/base.yaml" <<YAML
extends: ../common.yaml
train: {lr: 1.0e-3}
YAML
cat > "$WORK/cfg/tiny.yaml" <<YAML
name: tiny
base: base.yaml
runs_dir: $WORK/runs
set: {train.max_steps: 3}
grid:
  train.lr: [1.0e-3, 3.0e-3]
  train.seed: [1, 2]
YAML
S="$MODRWKV sweep"
if ! "$MODRWKV" sweep --help > /dev/null 2>&1 || ! "$MODRWKV" config --help > /dev/null 2>&1; then
    fail "modrwkv has the sweep and config commands (trainer/main.c dispatches to sweep_main and config_main)"
    finish
    exit 1
fi

# ---- config show / schema
"$MODRWKV" config show "$WORK/cfg/base.yaml" --set train.ctx_len=48 > "$WORK/show.txt"
check "config show prints the merged values of the extends chain and --set" \
    grep -q "n_embd: 64" "$WORK/show.txt"
check "config show: the including file's lr and the --set ctx_len" \
    bash -c "grep -q 'lr: 0.001 ' '$WORK/show.txt' && grep -q 'ctx_len: 48 ' '$WORK/show.txt' && grep -q 'n_layer: 1 ' '$WORK/show.txt'"
"$MODRWKV" config schema > "$WORK/schema.txt"
check "config schema lists the keys with type, default and meaning" \
    bash -c "grep -q '^train.lr  *float  *6e-4  *peak learning rate' '$WORK/schema.txt' && grep -q '^model.adapter.kind ' '$WORK/schema.txt'"

# ---- a 2x2 sweep
$S expand "$WORK/cfg/tiny.yaml" > "$WORK/expand.txt"
check "sweep expand lists 4 runs" test "$(wc -l < "$WORK/expand.txt")" = 4
$S run "$WORK/cfg/tiny.yaml" > "$WORK/run1.txt" 2>&1
rc=$?
check "sweep run: exit 0" test $rc = 0
check "every run has DONE, config.yaml, sweep.json and metrics.jsonl" \
    bash -c "for id in \$(cut -d' ' -f1 '$WORK/expand.txt'); do d='$WORK/runs/tiny/'\$id; \
             test -f \$d/DONE -a -f \$d/config.yaml -a -f \$d/sweep.json -a -f \$d/metrics.jsonl || exit 1; done"
check "sweep.json names the sweep, the run and its parameters" \
    bash -c "id=\$(head -1 '$WORK/expand.txt' | cut -d' ' -f1); grep -q '\"train.lr\": \"1.0e-3\"' '$WORK/runs/tiny/'\$id/sweep.json && \
             grep -q '\"sweep\": \"tiny\"' '$WORK/runs/tiny/'\$id/sweep.json"
$S run "$WORK/cfg/tiny.yaml" > "$WORK/run2.txt" 2>&1
check "rerun skips every finished run" grep -q "4 runs, 4 skipped (already done), 0 failed" "$WORK/run2.txt"

# ---- a run interrupted after step 2: DONE and the step-3 checkpoint removed
third=$(sed -n 3p "$WORK/expand.txt" | cut -d' ' -f1)
rm "$WORK/runs/tiny/$third/DONE" "$WORK/runs/tiny/$third/checkpoints/step-00000003.safetensors"
$S status "$WORK/cfg/tiny.yaml" > "$WORK/status1.txt"
cat "$WORK/status1.txt"
check "status: the interrupted run is partial, the others done" \
    bash -c "grep '^$third ' '$WORK/status1.txt' | grep -q 'partial step 3 of 3' && test \$(grep -c ' done ' '$WORK/status1.txt') = 3"
$S run "$WORK/cfg/tiny.yaml" > "$WORK/run3.txt" 2>&1
check "rerun: 3 skipped, the interrupted run resumed from step 2" \
    bash -c "grep -q '4 runs, 3 skipped' '$WORK/run3.txt' && grep -q 'resume: .*step-00000002.safetensors (step 2' '$WORK/runs/tiny/$third/train.log' && \
             test -f '$WORK/runs/tiny/$third/DONE'"

# ---- a sweep killed by SIGKILL during its second run continues where it stopped
sed -e 's/name: tiny/name: killed/' -e 's/train.max_steps: 3/train.max_steps: 150/' -e 's/^set: {/set: {train.save_every: 10, /' \
    "$WORK/cfg/tiny.yaml" > "$WORK/cfg/killed.yaml"
second=$($S expand "$WORK/cfg/killed.yaml" | sed -n 2p | cut -d' ' -f1)
$S run "$WORK/cfg/killed.yaml" > "$WORK/kill1.txt" 2>&1 &
pid=$!
for _ in $(seq 600); do  # kill -9 as soon as the second run has written its step-20 checkpoint
    [ -f "$WORK/runs/killed/$second/checkpoints/step-00000020.safetensors" ] && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.1
done
kill -KILL $pid
wait $pid 2>/dev/null
$S status "$WORK/cfg/killed.yaml" > "$WORK/status2.txt"
cat "$WORK/status2.txt"
check "after SIGKILL: run 1 done, run 2 partial, runs 3-4 not started" \
    bash -c "test \$(grep -c ' done ' '$WORK/status2.txt') = 1 && grep '^$second ' '$WORK/status2.txt' | grep -q 'partial step' && \
             test \$(grep -c 'not started' '$WORK/status2.txt') = 2"
$S run "$WORK/cfg/killed.yaml" > "$WORK/kill2.txt" 2>&1
rc=$?
cat "$WORK/kill2.txt"; grep "resume:" "$WORK/runs/killed/$second/train.log"
check "the rerun skips run 1, resumes run 2 from its checkpoint and finishes every run" \
    bash -c "test $rc = 0 && grep -q '4 runs, 1 skipped' '$WORK/kill2.txt' && grep -q 'resume: .*killed/$second/.*(step [1-9]' '$WORK/runs/killed/$second/train.log' && \
             test \$(ls '$WORK'/runs/killed/*/DONE | wc -l) = 4"
$S status "$WORK/cfg/killed.yaml" > "$WORK/status3.txt"
check "status lists all 4 runs as done" test "$(grep -c ' done ' "$WORK/status3.txt")" = 4

# ---- SIGUSR1 during the first run: checkpoint, no DONE, the sweep stops; the rerun resumes it
sed -e 's/name: killed/name: usr1/' "$WORK/cfg/killed.yaml" > "$WORK/cfg/usr1.yaml"
first=$($S expand "$WORK/cfg/usr1.yaml" | sed -n 1p | cut -d' ' -f1)
$S run "$WORK/cfg/usr1.yaml" > "$WORK/usr1.txt" 2>&1 &
pid=$!
for _ in $(seq 600); do
    [ -f "$WORK/runs/usr1/$first/checkpoints/step-00000010.safetensors" ] && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.1
done
kill -USR1 $pid
rc=0
wait $pid || rc=$?
cat "$WORK/usr1.txt"
check "SIGUSR1: the sweep exits 0 after the running run's checkpoint, without DONE, and starts no other run" \
    bash -c "test $rc = 0 && grep -q 'stopped by a stop signal at step' '$WORK/usr1.txt' && test ! -f '$WORK/runs/usr1/$first/DONE' && \
             test \$(ls -d '$WORK'/runs/usr1/*/ | wc -l) = 1"
$S run "$WORK/cfg/usr1.yaml" > "$WORK/usr1b.txt" 2>&1
check "the rerun resumes the stopped run and finishes all 4" \
    bash -c "grep -q 'resume: .*usr1/$first/' '$WORK/runs/usr1/$first/train.log' && test \$(ls '$WORK'/runs/usr1/*/DONE | wc -l) = 4"

# ---- --jobs 2: two runs at a time, each in its own process
sed -e 's/name: tiny/name: jobs/' -e 's/train.max_steps: 3/train.max_steps: 40/' "$WORK/cfg/tiny.yaml" > "$WORK/cfg/jobs.yaml"
$S run "$WORK/cfg/jobs.yaml" --jobs 2 > "$WORK/jobs.txt" 2>&1
rc=$?
tail -n 3 "$WORK/jobs.txt"
check "sweep run --jobs 2: exit 0, every run DONE" \
    bash -c "test $rc = 0 && test \$(ls '$WORK'/runs/jobs/*/DONE | wc -l) = 4 && grep -q 'at most 2 at a time' '$WORK/jobs.txt'"
overlap() { # some run started (config.yaml written) before another one finished (DONE written)
    $PY - "$WORK/runs/jobs" <<'PYEOF'
import glob, os, sys
runs = [(os.stat(d + "/config.yaml").st_mtime, os.stat(d + "/DONE").st_mtime) for d in glob.glob(sys.argv[1] + "/*/")]
print("runs (start, end): %s" % sorted(runs))
sys.exit(0 if any(a != b and a[0] < b[0] < a[1] for a in runs for b in runs) else 1)
PYEOF
}
check "the runs overlapped in time (two at once)" overlap

# ---- errors
printf 'name: bad\nbase: base.yaml\ngrid:\n  train.lrr: [1]\n' > "$WORK/cfg/bad.yaml"
expect_error "unknown axis key" "bad.yaml:4: grid key 'train.lrr': unknown key" $S run "$WORK/cfg/bad.yaml"
expect_error "config show of a file with a bad key" "unknown key" "$MODRWKV" config show "$WORK/cfg/bad.yaml"
finish
