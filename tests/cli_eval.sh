#!/usr/bin/env bash
# `modrwkv eval` end to end on the demo data with a ModRWKV trained for 2 steps (its answers are poor: the test
# checks the measurement, not the model):
# - accuracy on digit QA: the summary line, eval.json (n = 3 answers per sample, value = correct / n, the Wilson
#   interval recomputed here, the first 20 items) and the per-item file, whose references are the dataset's
#   answers and whose correct flags agree with the value;
# - WER on the same answers (summary with the CER), perplexity on text (the same value for batch sizes 1 and 4);
# - multiple choice on the same questions with a choices file made from the dataset's last answers (digits
#   0-9 or Yes/No): the summary line, n, the predictions = argmax of the listed log-likelihoods (summed and
#   per token), accuracy = correct / n with its Wilson interval;
# - LAMBADA on the real tiny RWKV-7 (20 passages): correct = the items' flags, word perplexity = exp(NLL / n);
# - a run directory instead of --ckpt evaluates its newest checkpoint;
# - one-line errors: unknown metric, missing checkpoint or dataset, text data for a chat metric, audio data for
#   a model without an audio encoder, missing options, a run directory without checkpoints, a question missing
#   from the choices file.
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

# ---- multiple choice: the choices of each sample's last question (a digit or yes/no), from the items above
$PY - "$WORK/items.jsonl" "$WORK/choices.jsonl" <<'PYEOF'
import json, sys
last = {}
for line in open(sys.argv[1]):
    it = json.loads(line)
    last[it["key"]] = it["reference"].strip()
with open(sys.argv[2], "w") as f:
    for key, ref in last.items():
        choices = ["Yes", "No"] if ref in ("Yes", "No") else [str(d) for d in range(10)]
        f.write(json.dumps({"key": key, "choices": choices, "answer": choices.index(ref)}) + "\n")
PYEOF
"$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/digits_qa/test" --metric mc --choices "$WORK/choices.jsonl" \
    --max-samples 8 --out "$WORK/mc.json" --items "$WORK/mc-items.jsonl" > "$WORK/mc.txt"
echo "summary: $(head -n 1 "$WORK/mc.txt")"
check "mc summary line: accuracy, n, CI and the length-normalised accuracy" \
    grep -qE '^digits_qa/test: multiple-choice accuracy [0-9.]{5} \(n=8, 95% CI [0-9.]+-[0-9.]+\), length-normalised [0-9.]{5} \(95% CI' "$WORK/mc.txt"
mc_ok() {
    $PY - "$WORK/mc.json" "$WORK/mc-items.jsonl" <<'PYEOF'
import json, math, sys
r = json.load(open(sys.argv[1]))
items = [json.loads(l) for l in open(sys.argv[2])]
def argmax(v):
    return max(range(len(v)), key=lambda k: (v[k], -k))
z = 1.959963984540054
n, k = r["n"], r["correct"]
p = k / n
c = (p + z * z / (2 * n)) / (1 + z * z / n)
h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
pred_ok = all(it["predicted"] == argmax(it["choice_loglik"]) and
              it["predicted_norm"] == argmax([l / t for l, t in zip(it["choice_loglik"], it["choice_tokens"])]) and
              it["correct"] == (it["predicted"] == it["answer"]) for it in items)
print("n %d, correct %d (norm %d), value %.4f, ci %s (recomputed %.4f-%.4f), choices per item %s"
      % (n, k, r["correct_norm"], r["value"], r["ci95"], c - h, c + h, sorted({len(it["choice_loglik"]) for it in items})))
ok = (r["metric"] == "mc" and n == 8 and len(items) == 8 and abs(r["value"] - k / n) < 1e-12 and pred_ok
      and k == sum(it["correct"] for it in items) and r["correct_norm"] == sum(it["correct_norm"] for it in items)
      and abs(r["ci95"][0] - (c - h)) < 1e-6 and abs(r["ci95"][1] - (c + h)) < 1e-6
      and {len(it["choice_loglik"]) for it in items} <= {2, 10} and r["choices_file"] == sys.argv[1][:-7] + "choices.jsonl")
sys.exit(0 if ok else 1)
PYEOF
}
check "mc: predictions = argmax of the listed log-likelihoods, accuracy = correct / n, Wilson interval" mc_ok

# ---- LAMBADA on the real tiny model
TINY=$SRC/tests/data/tiny-rwkv7-834K-fp32.pth
"$MODRWKV" eval --ckpt "$TINY" --data "$SRC/tests/data/lambada_test.jsonl" --metric lambada --max-samples 20 \
    --out "$WORK/lambada.json" --items "$WORK/lambada-items.jsonl" > "$WORK/lambada.txt"
echo "summary: $(head -n 1 "$WORK/lambada.txt")"
check "lambada summary line: accuracy, n, CI and the last-word perplexity" \
    grep -qE '^data/lambada_test.jsonl: LAMBADA accuracy [0-9.]{5} \(n=20, 95% CI [0-9.]+-[0-9.]+\), last-word perplexity' "$WORK/lambada.txt"
lambada_ok() {
    $PY - "$WORK/lambada.json" "$WORK/lambada-items.jsonl" <<'PYEOF'
import json, math, sys
r = json.load(open(sys.argv[1]))
items = [json.loads(l) for l in open(sys.argv[2])]
texts = [json.loads(l)["text"] for l, _ in zip(open(sys.argv[1].rsplit("/", 1)[0] + "/lambada-src.jsonl"), range(20))]
nll = sum(it["nll"] for it in items)
print("n %d, correct %d, word perplexity %.6g (recomputed %.6g), targets %s"
      % (r["n"], r["correct"], r["word_perplexity"], math.exp(nll / len(items)), [it["reference"] for it in items[:4]]))
ok = (r["metric"] == "lambada" and r["n"] == 20 and len(items) == 20 and r["correct"] == sum(it["correct"] for it in items)
      and abs(r["word_perplexity"] / math.exp(nll / 20) - 1) < 1e-6   # items list NLL to 10 digits
      and all(it["reference"] == " " + t.rsplit(" ", 1)[1] for it, t in zip(items, texts))
      and all(it["target_tokens"] == len(it["reference"].encode()) for it in items))
sys.exit(0 if ok else 1)
PYEOF
}
head -n 20 "$SRC/tests/data/lambada_test.jsonl" > "$WORK/lambada-src.jsonl"
check "lambada: correct = the items' flags, word perplexity = exp(summed NLL / n), targets = the last words" lambada_ok

# ---- a run directory instead of --ckpt
"$MODRWKV" eval "$WORK/run" --data "$WORK/demo/digits_qa/test" --metric accuracy --max-samples 2 --name "digit QA" \
    > "$WORK/rundir.txt"
check "RUN_DIR evaluates its newest checkpoint (the same summary as --ckpt step 2)" cmp -s "$WORK/named.txt" "$WORK/rundir.txt"

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
expect_error "missing options" "--ckpt FILE (or RUN_DIR), --data and --metric are required" "$MODRWKV" eval --ckpt "$CKPT"
mkdir -p "$WORK/empty-run"
expect_error "a run directory without checkpoints" "no checkpoint" \
    "$MODRWKV" eval "$WORK/empty-run" --data "$WORK/demo/text/test" --metric perplexity
head -n 1 "$WORK/choices.jsonl" > "$WORK/one-choice.jsonl"
expect_error "a question missing from the choices file" "has no line in" \
    "$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/digits_qa/test" --metric mc --choices "$WORK/one-choice.jsonl" --max-samples 4
expect_error "bad --max-samples" "--max-samples" \
    "$MODRWKV" eval --ckpt "$CKPT" --data "$WORK/demo/text/test" --metric accuracy --max-samples 0
finish
