#!/usr/bin/env bash
# demo_e2e.sh — `modrwkv demo` end to end on this machine (the README's main command, ~5-10 minutes on 2
# cores): every stage runs, the report and the examples exist, and the results are what the README states:
# digit QA accuracy far above chance, ASR word error rate well below 50%, and the pretrained backbone ahead of
# the random one on validation loss (the paper's central finding at small scale).
source "$(dirname "$0")/../clilib.sh" "$@"
OUT=$WORK/demo
"$MODRWKV" demo --out "$OUT" > "$WORK/demo.txt" 2>&1
rc=$?
tail -n 25 "$WORK/demo.txt"
[ $rc = 0 ] && pass "modrwkv demo exits 0" || { fail "modrwkv demo: exit $rc"; finish; exit 1; }
for f in report.md eval-digits.json eval-speech.json example-digit.png example-speech.wav; do
    check "runs/demo/$f exists" test -s "$OUT/$f"
done
"$PY" - "$OUT" <<'PYEOF' && pass "demo results: accuracy, WER and pretrained-vs-random as stated" || fail "demo results below what the README states"
import json, sys
out = sys.argv[1]
acc = json.load(open(out + "/eval-digits.json"))
wer = json.load(open(out + "/eval-speech.json"))
def last_val(run):
    v = None
    for line in open(f"{out}/{run}/metrics.jsonl"):
        d = json.loads(line)
        v = d.get("val_loss", v)
    return v
pre, rnd = last_val("compare-pretrained"), last_val("compare-random")
print(f"digit QA accuracy {acc['value']:.3f} (n={acc['n']}, chance about 0.37: 1/10 of the digit questions and 1/2 of the yes/no ones)")
print(f"ASR WER {wer['value']:.3f} (n={wer['n']})")
print(f"val loss: pretrained backbone {pre:.4f}, random backbone {rnd:.4f}")
ok = acc["value"] >= 0.80 and wer["value"] <= 0.30 and pre < rnd
sys.exit(0 if ok else 1)
PYEOF
finish
