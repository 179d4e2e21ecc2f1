#!/usr/bin/env bash
# `modrwkv report` end to end on a hand-made sweep of 3 runs (2 projector kinds x 2 learning rates, one pair
# missing; one run without eval.json, one not finished, one whose run id and parameter value are HTML):
# - report.md / report.html: every run, its parameters, losses and metrics, the best values marked (bold / CSS
#   class), an ablation table per parameter, CPU runs' MFU as "n/a (CPU)", the measurement section, the
#   malicious run id escaped (no raw <script> in either document);
# - with gnuplot: SVG plots embedded in the HTML (no XML prolog inside), PNGs next to report.md;
#   without gnuplot (MODRWKV_GNUPLOT pointing to a missing program): the report still written, with the reason;
# - with Debian's chromium: the HTML rendered headless, the screenshot not blank, no console/JavaScript error;
# - one-line errors: no directory, a directory without runs, a malformed sweep.json, an unknown option.
source "$(dirname "$0")/clilib.sh"
if ! "$MODRWKV" report --help > /dev/null 2>&1; then
    fail "$MODRWKV has no report command: trainer/main.c must dispatch \"report\" to report_main"
    finish
    exit 1
fi
S=$WORK/sweep
make_run() { # make_run DIR RUN_ID KIND LR LOSS_END VAL [ACC]
    local d=$S/$1
    mkdir -p "$d/checkpoints"
    printf 'model:\n  projector: {kind: %s}\ntrain: {lr: %s}\n' "$3" "$4" > "$d/config.yaml"
    $PY - "$d" "$2" "$3" "$4" "$5" "$6" <<'PYEOF'
import json, sys
d, rid, kind, lr, end, val = sys.argv[1:7]
json.dump({"sweep": "proj", "run_id": rid, "params": {"model.projector.kind": kind, "train.lr": lr},
           "overrides": []}, open(d + "/sweep.json", "w"))
with open(d + "/metrics.jsonl", "w") as f:
    for s in range(1, 11):
        loss = 3.0 + (float(end) - 3.0) * s / 10
        f.write(json.dumps({"step": s, "loss": loss, "lr": float(lr), "grad_norm": 1.0, "tokens": 512 * s,
                            "tokens_per_s": 1000.0 + s, "elapsed_s": 36.0 * s, "params_total": 1200000,
                            "params_trained": 30000}) + "\n")
        if s % 5 == 0:
            f.write(json.dumps({"step": s, "val_loss": float(val) + (10 - s) * 0.1}) + "\n")
    f.write('{"step": 11, "loss": 1.0, "tok')   # a line cut by a killed job
PYEOF
    if [ $# -ge 7 ]; then
        printf '{"metric": "accuracy", "value": %s, "n": 100, "ci95": [0.1, 0.9]}\n' "$7" > "$d/eval.json"
    fi
}
make_run a-mlp-lr1 mlp-lr1 mlp 1e-3 1.5 1.6 0.80
make_run b-linear-lr1 linear-lr1 linear 1e-3 1.8 1.9 0.80
make_run c-evil '<script>alert(1)</script>' '<b>mlp</b>' 3e-4 2.0 2.1
touch "$S/a-mlp-lr1/DONE" "$S/b-linear-lr1/DONE"

"$MODRWKV" report "$S" --out "$WORK/rep" > "$WORK/out.txt"
check "report command prints where it wrote" grep -q "report.html (3 runs)" "$WORK/out.txt"
MD=$WORK/rep/report.md
HTML=$WORK/rep/report.html
check "report.md written" test -s "$MD"
check "report.html written" test -s "$HTML"
check "md: the runs table lists the three runs" grep -q '^| mlp-lr1 | mlp | 1e-3 | done |' "$MD"
check "md: the best val loss (1.6) and both tied accuracies (0.8) are bold" \
    bash -c "grep -q '\*\*1.6\*\*' '$MD' && [ \$(grep -c '\*\*0.8\*\*' '$MD') -ge 2 ]"
check "md: the run without eval.json shows n/a" grep -q 'n/a' "$MD"
check "md: CPU runs report MFU as n/a (CPU)" grep -q 'n/a (CPU)' "$MD"
check "md: parameter counts from metrics.jsonl (30K trainable, 1.2M total)" grep -q '| 30K | 1.2M |' "$MD"
check "md: one ablation table per varied parameter" \
    bash -c "grep -q '^### model.projector.kind (other parameters averaged)' '$MD' && grep -q '^### train.lr (other parameters averaged)' '$MD'"
check "md: grouped ablation table (lr fixed at 1e-3)" grep -q '^### model.projector.kind with train.lr = 1e-3' "$MD"
check "md: how the numbers were measured" grep -q '^## How the numbers were measured' "$MD"
check "md: the cut metrics.jsonl line is reported" grep -q 'skipped in run' "$MD"
check "html: the best cells carry the CSS class" grep -q '<td class="best">1.6</td>' "$HTML"
check "html: the malicious run id and parameter are escaped" \
    bash -c "grep -q '&lt;script&gt;alert(1)&lt;/script&gt;' '$HTML' && grep -q '&lt;b&gt;mlp&lt;/b&gt;' '$HTML'"
check "html and md: no raw <script> or <b> from run files" \
    bash -c "! grep -q '<script\|<b>' '$HTML' '$MD'"
check "html: self-contained (inline CSS, no external src/href)" \
    bash -c "grep -q '<style>' '$HTML' && ! grep -qE '(src|href)=\"(https?:|//|[a-z_]+\\.(css|js|png))' '$HTML'"

if command -v gnuplot > /dev/null; then
    check "html: SVG plots embedded inline (loss curves + metric vs cost)" \
        bash -c "[ \$(grep -c '<svg' '$HTML') -ge 3 ] && ! grep -q '<?xml' '$HTML'"
    check "md: PNG plots referenced and written" \
        bash -c "grep -q '](report_files/loss.png)' '$MD' && test -s '$WORK/rep/report_files/loss.png' && test -s '$WORK/rep/report_files/cost_0.png'"
    check "png files are PNG" bash -c "head -c 8 '$WORK/rep/report_files/loss.png' | od -An -c | grep -q 'P   N   G'"
else
    echo "SKIP: SVG/PNG plot checks: gnuplot is not installed (Debian package gnuplot-nox)"
fi

MODRWKV_GNUPLOT=$WORK/no-such-gnuplot "$MODRWKV" report "$S" --out "$WORK/rep2" > /dev/null
check "without gnuplot: report still written with the reason plots were skipped" \
    bash -c "grep -q 'Plots skipped: gnuplot was not found' '$WORK/rep2/report.md' && grep -q 'Plots skipped' '$WORK/rep2/report.html'"

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ]; then
    timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --enable-logging=stderr --v=0 \
        --user-data-dir="$WORK/chrome-profile" --screenshot="$WORK/shot.png" --window-size=1280,2000 \
        "file://$HTML" > "$WORK/chrome.out" 2> "$WORK/chrome.err"
    check "chromium: screenshot written" test -s "$WORK/shot.png"
    shot_ok() {
        $PY - "$WORK/shot.png" <<'PYEOF'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, w, h = 8, b"", 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
# distinct byte values over the decoded scanlines: a blank page has one colour (and filter bytes)
distinct = len(set(raw[::7]))
print("screenshot %dx%d, %d distinct sampled byte values" % (w, h, distinct))
sys.exit(0 if w == 1280 and distinct > 16 else 1)
PYEOF
    }
    check "chromium: screenshot 1280 wide and not blank" shot_ok
    if grep -iE 'CONSOLE|Uncaught|SyntaxError|ReferenceError' "$WORK/chrome.err" > "$WORK/console.txt"; then
        fail "chromium: console/JavaScript errors: $(head -n 3 "$WORK/console.txt")"
    else
        pass "chromium: no console or JavaScript error on stderr"
    fi
else
    echo "SKIP: headless Chromium rendering checks: chromium is not installed (Debian package chromium)"
fi

# ---- errors
expect_error "missing directory" "no-such-dir" "$MODRWKV" report "$WORK/no-such-dir"
mkdir -p "$WORK/empty/sub"
expect_error "directory without runs" "no run directories" "$MODRWKV" report "$WORK/empty"
mkdir -p "$WORK/bad/r1" && echo '{"sweep": ' > "$WORK/bad/r1/sweep.json"
expect_error "malformed sweep.json" "r1/sweep.json" "$MODRWKV" report "$WORK/bad"
expect_error "unknown option" "--bogus" "$MODRWKV" report "$S" --bogus
expect_error "no directory given" "sweep directory" "$MODRWKV" report
check "--help" bash -c "'$MODRWKV' report --help | grep -q 'usage: modrwkv report DIR'"
finish
