#!/usr/bin/env bash
# `modrwkv train` end to end on real text (the LAMBADA passages in tests/data, byte tokenizer):
# - the validation loss falls well below the unigram entropy of the text (the model learns context);
# - a run stopped at step 20 and resumed with --resume auto reproduces the uninterrupted run's losses
#   and final weights bit for bit;
# - a NaN/Inf loss stops the run with a one-line error naming the step and leaves the last good
#   checkpoint intact.
source "$(dirname "$0")/clilib.sh"
cd "$SRC"
cat > "$WORK/small.yaml" <<YAML
model: {init: official, n_layer: 2, n_embd: 64, head_size: 64}
data: {train: tests/data/lambada_test.jsonl, tokenizer: bytes, val_fraction: 0.02}
train: {ctx_len: 64, micro_batch: 8, max_steps: 40, lr: 3.0e-3, lr_final: 3.0e-4, warmup_steps: 5,
        eval_every: 0, eval_batches: 4, save_every: 10, keep_checkpoints: 10, log_every: 10, threads: 1}
YAML

# ---- learning: 150 steps, then the validation loss vs the unigram entropy of the training bytes
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/learn" --set train.max_steps=150 --set train.eval_every=150 \
    --set train.eval_batches=16 > "$WORK/learn.log"
learned() {
    $PY - "$SRC/tests/data/lambada_test.jsonl" "$WORK/learn/metrics.jsonl" <<'PYEOF'
import sys, json, math, collections
counts = collections.Counter()
for line in open(sys.argv[1], encoding="utf-8"):
    counts.update(json.loads(line)["text"].encode("utf-8"))
total = sum(counts.values())
h = -sum(c / total * math.log(c / total) for c in counts.values())
val = [json.loads(l)["val_loss"] for l in open(sys.argv[2]) if "val_loss" in l][-1]
first = [json.loads(l)["loss"] for l in open(sys.argv[2]) if '"loss"' in l][0]
print("unigram entropy %.4f nats/byte; first train loss %.4f; final val loss %.4f (must be < 0.8 x entropy = %.4f)"
      % (h, first, val, 0.8 * h))
sys.exit(0 if val < 0.8 * h else 1)
PYEOF
}
check "training on real text: validation loss well below the unigram entropy" learned

# ---- exact resume
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/full" > /dev/null
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/resumed" --stop-at-step 20 > /dev/null
check "stopped run has a step-20 checkpoint" test -f "$WORK/resumed/checkpoints/step-00000020.safetensors"
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/resumed" --resume auto > "$WORK/resume.log"
check "the resumed run says where it resumed" grep -q "resume: .*step-00000020.safetensors (step 20" "$WORK/resume.log"
losses() { grep '"loss"' "$1" | sed 's/.*"loss":\([^,]*\),.*/\1/'; }
same_losses() {
    losses "$WORK/full/metrics.jsonl" > "$WORK/a.txt"
    losses "$WORK/resumed/metrics.jsonl" > "$WORK/b.txt"
    echo "uninterrupted: $(wc -l < "$WORK/a.txt") losses, last $(tail -n 1 "$WORK/a.txt"); resumed: $(wc -l < "$WORK/b.txt"), last $(tail -n 1 "$WORK/b.txt")"
    [ "$(wc -l < "$WORK/a.txt")" = 40 ] && cmp -s "$WORK/a.txt" "$WORK/b.txt"
}
check "resumed run's 40 losses are bit-identical to the uninterrupted run's" same_losses
mkdir -p "$WORK/wa" "$WORK/wb"
"$MODRWKV" export --ckpt "$WORK/full/checkpoints/step-00000040.safetensors" --format pth --dtype fp32 --out "$WORK/wa/w.pth" > /dev/null
"$MODRWKV" export --ckpt "$WORK/resumed/checkpoints/step-00000040.safetensors" --format pth --dtype fp32 --out "$WORK/wb/w.pth" > /dev/null
check "resumed run's final weights are bit-identical" cmp "$WORK/wa/w.pth" "$WORK/wb/w.pth"

# ---- gradient accumulation: 2 x 4 sequences give the same steps as 1 x 8 (same samples, same mean loss)
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/acc1" --set train.max_steps=5 > /dev/null
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/acc2" --set train.max_steps=5 --set train.micro_batch=4 \
    --set train.grad_accum=2 > /dev/null
same_curve() {
    $PY - "$WORK/acc1/metrics.jsonl" "$WORK/acc2/metrics.jsonl" <<'PYEOF'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1]) if '"loss"' in l]
b = [json.loads(l)["loss"] for l in open(sys.argv[2]) if '"loss"' in l]
err = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print("micro 8 x 1: %s\nmicro 4 x 2: %s\nmax relative difference %.2e (tol 1e-4)" % (a, b, err))
sys.exit(0 if len(a) == len(b) == 5 and err < 1e-4 else 1)
PYEOF
}
check "gradient accumulation (4 x 2) follows the same loss curve as one batch of 8" same_curve

# ---- on a terminal: a one-line progress display with loss, tokens/s and ETA
script -qec "'$MODRWKV' train '$WORK/small.yaml' --set run_dir='$WORK/tty' --set train.max_steps=3" /dev/null > "$WORK/tty.txt"
check "a terminal gets a carriage-return progress line with loss, tok/s and ETA" \
    grep -qa $'\r\e\\[Kstep 3/3 | loss [0-9.]* | lr .* | [0-9]* tok/s | ETA 0:00:00' "$WORK/tty.txt"

# ---- training from HDF5 shards (datasets/FORMAT.md): convert the same text, train, resume exactly
head -n 400 "$SRC/tests/data/lambada_test.jsonl" > "$WORK/train.jsonl"
sed -n '401,440p' "$SRC/tests/data/lambada_test.jsonl" > "$WORK/val.jsonl"
"$MODRWKV" data convert --from jsonl-text --in "$WORK/train.jsonl" --tokenizer bytes --shard-size 150 --out "$WORK/sh-train" > /dev/null
"$MODRWKV" data convert --from jsonl-text --in "$WORK/val.jsonl" --tokenizer bytes --split val --out "$WORK/sh-val" > /dev/null
shard_run() { # shard_run DIR ARGS...: 30 steps on the shard datasets
    local dir=$1; shift
    "$MODRWKV" train "$WORK/small.yaml" --set run_dir="$dir" --set data.train="$WORK/sh-train" --set data.val="$WORK/sh-val" \
        --set train.max_steps=30 --set train.eval_every=30 "$@"
}
shard_run "$WORK/sh-full" > "$WORK/sh.log"
check "the trainer reads shard datasets (data.train is a directory with manifest.json)" grep -q "data: shards" "$WORK/sh.log"
shard_learned() {
    $PY - "$WORK/sh-full/metrics.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
loss = [r["loss"] for r in rows if "loss" in r]; val = [r["val_loss"] for r in rows if "val_loss" in r]
print("shard training: first loss %.4f, last loss %.4f, val loss %s" % (loss[0], loss[-1], val))
sys.exit(0 if len(loss) == 30 and loss[-1] < loss[0] - 1.0 and val and val[-1] < 3.5 else 1)
PYEOF
}
check "training on shards learns (loss falls by > 1 nat/byte, validation evaluated)" shard_learned
shard_run "$WORK/sh-resumed" --stop-at-step 12 > /dev/null
shard_run "$WORK/sh-resumed" --resume auto > /dev/null
losses "$WORK/sh-full/metrics.jsonl" > "$WORK/sa.txt"
losses "$WORK/sh-resumed/metrics.jsonl" > "$WORK/sb.txt"
check "resuming shard training reproduces the uninterrupted losses bit for bit" cmp "$WORK/sa.txt" "$WORK/sb.txt"

# ---- SIGUSR1 (Slurm's pre-timeout signal) / SIGTERM: checkpoint at the end of the step, exit 0, resumable
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/sig" --set train.max_steps=1000000 --set train.save_every=0 \
    --set train.eval_every=0 > "$WORK/sig.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q '"loss"' "$WORK/sig/metrics.jsonl" 2> /dev/null && break; sleep 0.1; done
kill -USR1 $pid
rc=0
wait $pid || rc=$?
stopped_step=$(sed -n 's/.*stopped after step \([0-9]*\).*/\1/p' "$WORK/sig.log")
check "SIGUSR1 stops the run with exit 0 after writing a checkpoint (step $stopped_step)" bash -c \
    "test $rc = 0 && test -n '$stopped_step' && test -f '$WORK/sig/checkpoints/step-$(printf %08d "${stopped_step:-0}").safetensors'"
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/sig" --set train.max_steps=$((stopped_step + 3)) --resume auto > /dev/null
check "the signalled run resumes and finishes" test -f "$WORK/sig/checkpoints/step-$(printf %08d $((stopped_step + 3))).safetensors"

# ---- NaN: diverge on purpose after a good checkpoint
"$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/nan" --set train.max_steps=10 > /dev/null
sum_before=$(sha256sum "$WORK/nan/checkpoints/step-00000010.safetensors" | cut -d' ' -f1)
expect_error "diverging run stops with the step number" "is NaN" \
    "$MODRWKV" train "$WORK/small.yaml" --set run_dir="$WORK/nan" --resume auto --set train.max_steps=30 \
    --set train.lr=1e30 --set train.grad_clip=0
check "the error names the last good checkpoint" grep -q "step-00000010.safetensors" "$WORK/err.txt"
sum_after=$(sha256sum "$WORK/nan/checkpoints/step-00000010.safetensors" | cut -d' ' -f1)
check "the last good checkpoint is intact" test "$sum_before" = "$sum_after"
check "no checkpoint was written after the divergence" test "$(ls "$WORK/nan/checkpoints" | wc -l)" = 1
finish
