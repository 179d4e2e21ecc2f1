#!/usr/bin/env bash
# Every shipped experiments/*.yaml resolves without the checkpoints and data it names existing:
# - configs: `modrwkv config show FILE` exits 0 (extends chains, every key known and valid);
# - sweeps (a top-level `base:`): `modrwkv sweep expand FILE` gives the expected number of runs (a new sweep
#   must be added to RUNS below);
# - the paper recipes carry the paper's Table 9 hyper-parameters: stage 1 lr 1e-3, batch 256 on 8 ranks,
#   stage 2 lr 2e-5, batch 128 on 8 ranks; both ctx_len 2048, warmup 100, betas 0.9 / 0.99, eps 1e-8,
#   cosine to 0 (the released code's "wsd"), projector only / projector + backbone trained, the encoder frozen;
#   the backbone sizes of the official checkpoints (0.4B L24 C1024, 1.5B L24 C2048, 3B L32 C2560); stage 2 takes
#   stage 1's last checkpoint; the audio recipe's lr 1e-4 then 1e-4 -> 5e-5 with the Whisper encoder;
# - each stage-2 sweep takes its projectors from the last checkpoints of its stage-1 sweep's runs (the ids
#   that `sweep expand` gives), and the Table 7 sweeps vary (kernel, stride) over (3,2) (4,3) (5,4) plus the
#   no-convolution run; every paper file says that its paths are placeholders.
source "$(dirname "$0")/clilib.sh"
cd "$SRC/experiments"
declare -A RUNS=([demo-sweep]=12 [paper-table7-conv-stage1]=4 [paper-table7-conv]=4
                 [paper-table8-checkpoints-stage1]=4 [paper-table8-checkpoints]=4)

for f in *.yaml; do
    name=${f%.yaml}
    if grep -q '^base:' "$f"; then
        if ! "$MODRWKV" sweep expand "$f" > "$WORK/$name.runs" 2> "$WORK/$name.err"; then
            fail "$f: sweep expand: $(cat "$WORK/$name.err")"
            continue
        fi
        n=$(wc -l < "$WORK/$name.runs")
        want=${RUNS[$name]:-unknown}
        check "$f: sweep expand gives $n runs (expected $want)" test "$n" = "$want"
    else
        if "$MODRWKV" config show "$f" > "$WORK/$name.resolved" 2> "$WORK/$name.err"; then
            pass "$f: config show resolves it"
        else
            fail "$f: config show: $(cat "$WORK/$name.err")"
        fi
    fi
done

recipes_ok() {
    $PY - "$WORK" <<'PYEOF'
import sys, yaml
work = sys.argv[1]
def floats(d):   # config show writes 1e-08 (a string to YAML 1.1): numbers-looking strings become floats
    if isinstance(d, dict):
        return {k: floats(v) for k, v in d.items()}
    if isinstance(d, str):
        try:
            return float(d) if any(c.isdigit() for c in d) and "/" not in d and "," not in d else d
        except ValueError:
            return d
    return d
def cfg(name):
    return floats(yaml.safe_load(open("%s/%s.resolved" % (work, name))))
ok = True
def expect(name, what, got, want):
    global ok
    good = got == want
    ok &= good
    if not good:
        print("%s: %s is %r, expected %r" % (name, what, got, want))
sizes = {"0.4b": (24, 1024), "1.5b": (24, 2048), "3b": (32, 2560)}
for size, (L, C) in sizes.items():
    for stage in (1, 2):
        name = "modrwkv-siglip2-%s-stage%d" % (size, stage)
        c = cfg(name)
        m, t = c["model"], c["train"]
        expect(name, "sizes", (m["n_layer"], m["n_embd"], m["head_size"]), (L, C, 64))
        expect(name, "ctx_len, warmup, betas, eps", (t["ctx_len"], t["warmup_steps"], t["beta1"], t["beta2"], t["adam_eps"]),
               (2048, 100, 0.9, 0.99, 1e-8))
        expect(name, "schedule", (t["schedule"], t["lr_final"]), ("cosine", 0))
        expect(name, "encoder", (m["vision"]["kind"], m["vision"]["image_size"], m["vision"]["patch"], m["vision"]["width"]),
               ("siglip", 384, 16, 768))
        expect(name, "adapter", m["adapter"]["kind"], "none")
        batch = t["micro_batch"] * t["grad_accum"] * 8
        if stage == 1:
            expect(name, "lr, batch on 8 ranks, trained, steps", (t["lr"], batch, t["stage"], t["trainable"], t["max_steps"]),
                   (1e-3, 256, 1, "projector", 2326))
        else:
            expect(name, "lr, batch on 8 ranks, trained, steps", (t["lr"], batch, t["stage"], t["trainable"], t["max_steps"]),
                   (2e-5, 128, 2, "projector,backbone", 5198))
            expect(name, "projector from stage 1", m["projector"]["init"],
                   "runs/modrwkv-siglip2-%s-stage1/checkpoints/step-00002326.safetensors" % size)
            expect(name, "backbone from the stage-1 file", m["init"], cfg(name.replace("stage2", "stage1"))["model"]["init"])
a1, a2 = cfg("asr-wavlm-or-whisper"), cfg("asr-wavlm-or-whisper-stage2")
expect("asr stage 1", "encoder, lr, trained", (a1["model"]["audio"]["kind"], a1["train"]["lr"], a1["train"]["lr_final"],
       a1["train"]["trainable"]), ("whisper", 1e-4, 1e-4, "projector"))
expect("asr stage 2", "lr 1e-4 -> 5e-5, trained, projector from stage 1",
       (a2["train"]["lr"], a2["train"]["lr_final"], a2["train"]["trainable"], a2["model"]["projector"]["init"]),
       (1e-4, 5e-5, "projector,backbone", "runs/asr-whisper-0.4b-stage1/checkpoints/step-%08d.safetensors"
        % a1["train"]["max_steps"]))
print("paper recipes: %s" % ("Table 9 values, sizes and stage links as expected" if ok else "MISMATCH"))
sys.exit(0 if ok else 1)
PYEOF
}
check "paper recipes: Table 9 hyper-parameters, official sizes, stage 2 from stage 1" recipes_ok

sweeps_ok() {
    $PY - "$WORK" <<'PYEOF'
import sys
work = sys.argv[1]
def runs(name):
    out = []
    for line in open("%s/%s.runs" % (work, name)):
        rid, *sets = line.split()
        out.append((rid, dict(s.split("=", 1) for s in sets)))
    return out
ok = True
for table in ("paper-table7-conv", "paper-table8-checkpoints"):
    first, second = runs(table + "-stage1"), runs(table)
    want = ["runs/%s-stage1/%s/checkpoints/step-00002326.safetensors" % (table, rid) for rid, _ in first]
    got = [p["model.projector.init"] for _, p in second]
    same_params = all({k: v for k, v in p2.items() if k != "model.projector.init"} == p1
                      for (_, p1), (_, p2) in zip(first, second))
    print("%s: stage-2 projectors from %s" % (table, [g.split("/")[2] for g in got]))
    ok &= got == want and same_params
conv = [(p["model.projector.kind"], p["model.projector.conv_kernel"], p["model.projector.conv_stride"])
        for _, p in runs("paper-table7-conv")]
print("Table 7 settings: %s" % conv)
ok &= conv == [("mlp", "3", "2"), ("conv_mlp", "3", "2"), ("conv_mlp", "4", "3"), ("conv_mlp", "5", "4")]
inits = [p["model.init"].split("/")[-1] for _, p in runs("paper-table8-checkpoints")]
print("Table 8 checkpoints: %s" % inits)
ok &= [i.startswith("RWKV-x070-World") for i in inits] == [True, False, True, False] and all("g1" in i for i in inits[1::2])
sys.exit(0 if ok else 1)
PYEOF
}
check "stage-2 sweeps take the projectors of their stage-1 runs; Table 7 (k, s) and Table 8 checkpoints" sweeps_ok

missing=$(grep -L "PLACEHOLDER PATHS" modrwkv-siglip2-*.yaml paper-*.yaml asr-*.yaml | tr '\n' ' ')
check "every paper file notes that its paths are placeholders (missing: ${missing:-none})" test -z "$missing"
finish
