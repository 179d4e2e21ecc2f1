#!/usr/bin/env bash
# `modrwkv eval` end to end on the demo data with a ModRWKV trained for 2 steps (its answers are poor: the test
# checks the measurement, not the model):
# - accuracy on digit QA: the summary line, eval.json (n = 3 answers per sample, value = correct / n, the Wilson
#   interval recomputed here, the first 20 items) and the per-item file, whose references are the dataset's
#   answers and whose correct flags agree with the value;
# - WER on the same answers (summary with the CER), perplexity on text (the same value for batch sizes 1 and 4);
# - one-line errors: unknown metric, missing checkpoint or dataset, text data for a chat metric, audio data for
#   a model without an audio encoder, missing options.
source "$(dirname "$0")/clilib.sh"
cd "$SRC"
"$MODRWKV" data demo --out "$WORK/demo" > /dev/null
cat > "$WORK/mm.yaml" <<YAML
run_dir: $WORK/run
model:
  init: official
  n_layer: 1
  n_embd: 64
  head_size: 64
  vision: {kind: siglip, image_size: 16, patch: 4, width: 32, layers: 1, heads: 2, mlp: 64}
  projector: {kind: mlp, ratio: 2}
data: {train: $WORK/demo/digits_qa/train}
train: {stage: 2, trainable: "projector,backbone,vision", ctx_len: 96, micro_batch: 4, max_steps: 2, lr: 1e-3,
        eval_every: 0, log_every: 1, threads: 1}
YAML
"$MODRWKV" train "$WORK/mm.yaml" > "$WORK/train.log"
CKPT=$WORK/run/checkpoints/step-00000002.safetensors
check "a 2-step multimodal checkpoint to evaluate" test -f "$CKPT"

# ---- accuracy
"$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/digits_qa/test" --metric accuracy --max-samples 8 \
    --out "$WORK/eval.json" --items "$WORK/items.jsonl" > "$WORK/acc.txt"
echo "summary: $(head -n 1 "$WORK/acc.txt")"
check "accuracy summary line: name, value, n and 95% CI" \
    grep -qE '^digits_qa/test: accuracy [0-9]\.[0-9]{3} \(n=24, 95% CI [0-9]\.[0-9]{3}-[0-9]\.[0-9]{3}\)$' "$WORK/acc.txt"
report_ok() {
    $PY - "$WORK/eval.json" "$WORK/items.jsonl" "$CKPT" <<'PYEOF'
import json, math, sys
r = json.load(open(sys.argv[1]))
items = [json.loads(l) for l in open(sys.argv[2])]
n, k = r["n"], r["correct"]
z = 1.959963984540054
p = k / n
c = (p + z * z / (2 * n)) / (1 + z * z / n)
h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
refs = {" " + str(d) for d in range(10)} | {" Yes", " No"}
print("n %d, correct %d, value %.4f, ci %s (recomputed %.4f-%.4f), %d items listed of %d, %d lines"
      % (n, k, r["value"], r["ci95"], c - h, c + h, len(r["items"]), r["items_total"], len(items)))
ok = (n == 24 and r["dataset"]["samples"] == 8 and abs(r["value"] - k / n) < 1e-9
      and abs(r["ci95"][0] - (c - h)) < 1e-6 and abs(r["ci95"][1] - (c + h)) < 1e-6
      and r["checkpoint"] == sys.argv[3] and r["metric"] == "accuracy" and "greedily" in r["method"]
      and len(r["items"]) == 20 and r["items_total"] == 24 and len(items) == 24
      and all(it["reference"] in refs for it in items) and sum(it["correct"] for it in items) == k
      and [(it["key"], it["turn"]) for it in items[:20]] == [(it["key"], it["turn"]) for it in r["items"]]
      and r["yes_no"]["n"] == sum(it["reference"] in (" Yes", " No") for it in items))
sys.exit(0 if ok else 1)
PYEOF
}
check "eval.json: n, value = correct / n, the Wilson interval, 20 of 24 items; items.jsonl: every answer" report_ok

"$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/digits_qa/test" --metric accuracy --max-samples 2 \
    --name "digit QA" > "$WORK/named.txt"
check "--name labels the summary" grep -qE '^digit QA: accuracy [0-9.]+ \(n=6, ' "$WORK/named.txt"

# ---- WER and perplexity
"$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/digits_qa/test" --metric wer --max-samples 2 > "$WORK/wer.txt"
echo "summary: $(cat "$WORK/wer.txt")"
check "WER summary line with the CER" \
    grep -qE '^digits_qa/test: WER [0-9.]+ \(n=6 answers, 6 words, 95% CI [0-9.]+-[0-9.]+\), CER [0-9.]+ \(95% CI' "$WORK/wer.txt"
"$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/text/test" --metric perplexity --max-samples 4 --batch-size 1 > "$WORK/p1.txt"
"$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/text/test" --metric perplexity --max-samples 4 --batch-size 4 > "$WORK/p4.txt"
echo "batch 1: $(cat "$WORK/p1.txt")"
echo "batch 4: $(cat "$WORK/p4.txt")"
check "perplexity summary line" grep -qE '^text/test: perplexity [0-9.e+]+ \(n=[0-9]+ targets in 4 samples, 95% CI' "$WORK/p1.txt"
check "perplexity does not depend on the batch size" cmp -s "$WORK/p1.txt" "$WORK/p4.txt"

# ---- errors
check "--help prints the usage" bash -c "'$MODRWKV' eval --help | grep -q 'usage: modrwkv eval'"
expect_error "unknown metric" "unknown metric 'bleu'" \
    "$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/text/test" --metric bleu
expect_error "missing checkpoint" "$WORK/none.safetensors" \
    "$MODRWKV" eval --ckpt "$WORK/none.safetensors" --data "$WORK/demo/text/test" --metric accuracy
expect_error "missing dataset" "$WORK/nothing" "$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/nothing" --metric accuracy
expect_error "text data has no chat answers" "not a chat answer" \
    "$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/text/test" --metric accuracy
expect_error "audio data for a model without an audio encoder" "no audio encoder" \
    "$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/spoken_digits/test" --metric wer
expect_error "missing options" "--ckpt FILE, --data DIR and --metric are required" "$MODRWKV" eval --ckpt "$CKPT"
expect_error "bad --max-samples" "--max-samples" \
    "$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/text/test" --metric accuracy --max-samples 0
finish
