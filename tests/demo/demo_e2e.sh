#!/usr/bin/env bash
# demo_e2e.sh — `modrwkv demo` end to end on this machine (the README's main command, ~5-10 minutes on 2
# cores): every stage runs, the report and the examples exist, and the results are what the README states:
# digit QA accuracy far above chance, ASR word error rate well below 50%, and the pretrained backbone ahead of
# the random one on validation loss (the paper's central finding at small scale).
# Then the design sweep experiments/demo-sweep.yaml (README: ~5 minutes on 2 cores), run as its header says
# from a directory where the demo's runs/demo and the sweep's runs/demo-data lie: 12 runs (projector mlp |
# conv_mlp | linear x backbone random | the demo's stage-0 checkpoint x adapter none | bone), each finished and
# evaluated, `modrwkv report runs/demo-sweep` lists them, and for every projector and adapter the run from the
# pretrained backbone ends with a lower validation loss than the run from the random backbone.
source "$(dirname "$0")/../clilib.sh" "$@"
cd "$WORK"
OUT=runs/demo
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

# ---- the design sweep over the demo data, from the demo's stage-0 checkpoint or a random backbone
T0=$(date +%s)
"$MODRWKV" data demo --out runs/demo-data --tokenizer bytes --short-range > "$WORK/sweep-data.txt" 2>&1
check "modrwkv data demo --short-range builds runs/demo-data" test -f runs/demo-data/digits_qa/train/manifest.json
check "the demo left the stage-0 checkpoint the sweep starts from" \
    test -f runs/demo/stage0-text/checkpoints/step-00000400.safetensors
rc=0
"$MODRWKV" sweep run "$SRC/experiments/demo-sweep.yaml" > "$WORK/sweep.txt" 2>&1 || rc=$?
tail -n 14 "$WORK/sweep.txt"
check "modrwkv sweep run experiments/demo-sweep.yaml exits 0" test "$rc" = 0
"$MODRWKV" report runs/demo-sweep > "$WORK/report.txt" 2>&1
cat "$WORK/report.txt"
check "modrwkv report runs/demo-sweep writes report.md and report.html" \
    test -s runs/demo-sweep/report.md -a -s runs/demo-sweep/report.html
echo "sweep, data and report: $(( $(date +%s) - T0 )) s"
"$PY" - runs/demo-sweep <<'PYEOF' && pass "every pretrained-backbone run ends below its random-backbone twin on validation loss" \
    || fail "a pretrained-backbone run does not beat its random-backbone twin (or runs are missing)"
import json, os, sys
root = sys.argv[1]
report = open(root + "/report.md").read().replace("\\", "")   # markdown escapes: conv\_mlp
runs = {}
for rid in sorted(os.listdir(root)):
    d = os.path.join(root, rid)
    if not os.path.isfile(d + "/sweep.json"):
        continue
    params = json.load(open(d + "/sweep.json"))["params"]
    val = None
    for line in open(d + "/metrics.jsonl"):
        try:
            val = json.loads(line).get("val_loss", val)
        except ValueError:
            pass
    done = os.path.isfile(d + "/DONE") and os.path.isfile(d + "/eval.json")
    runs[rid] = (params, val, done, rid in report)
pairs = {}
for rid, (p, val, done, listed) in runs.items():
    other = tuple(sorted((k, v) for k, v in p.items() if k != "model.init"))
    pretrained = p["model.init"].endswith("step-00000400.safetensors")
    pairs.setdefault(other, {})["pretrained" if pretrained else "random"] = val
ok = len(runs) == 12 and all(done and listed and val is not None for _, val, done, listed in runs.values())
print("%d runs, %d finished with eval.json, %d listed in report.md" % (len(runs), sum(r[2] for r in runs.values()),
                                                                      sum(r[3] for r in runs.values())))
for other, v in sorted(pairs.items()):
    pre, rnd = v.get("pretrained"), v.get("random")
    good = pre is not None and rnd is not None and pre < rnd
    ok &= good
    print("  %-55s val loss pretrained %s, random %s %s" % (", ".join("%s=%s" % kv for kv in other),
          "%.4f" % pre if pre is not None else "-", "%.4f" % rnd if rnd is not None else "-", "" if good else "<- NOT LOWER"))
ok &= len(pairs) == 6
sys.exit(0 if ok else 1)
PYEOF
finish
