#!/usr/bin/env bash
# init / export / import round trips: exporting a model and exporting the export again gives identical
# bytes (.pth and .safetensors, fp32 and bf16); the exported tiny model loads in PyTorch (torch.load,
# also weights_only=True) with the original's names, order, shapes, dtypes and bits; a fresh `init`
# loads in PyTorch with every official RWKV-7 name and shape.
source "$(dirname "$0")/clilib.sh"
mkdir -p "$WORK/a" "$WORK/b" "$WORK/c"

"$MODRWKV" init --n-layer 2 --n-embd 128 --vocab 300 --init random --seed 3 --out "$WORK/a/m.pth" > /dev/null
for fmt in pth safetensors; do
    for dt in fp32 bf16; do
        "$MODRWKV" export --ckpt "$WORK/a/m.pth" --format $fmt --dtype $dt --out "$WORK/b/m.$fmt" > /dev/null
        "$MODRWKV" export --ckpt "$WORK/b/m.$fmt" --format $fmt --dtype $dt --out "$WORK/c/m.$fmt" > /dev/null
        check "export -> import -> export is byte-identical ($fmt, $dt)" cmp "$WORK/b/m.$fmt" "$WORK/c/m.$fmt"
    done
done
"$MODRWKV" export --ckpt "$WORK/a/m.pth" --format pth --dtype fp32 --out "$WORK/b/m.pth" > /dev/null
check "init fp32 .pth -> export fp32 .pth is byte-identical" cmp "$WORK/a/m.pth" "$WORK/b/m.pth"

for dt in fp32 bf16; do
    mkdir -p "$WORK/$dt"
    cp "$SRC/tests/data/tiny-rwkv7-834K-$dt.pth" "$WORK/$dt/ref.pth"
    "$MODRWKV" export --ckpt "$WORK/$dt/ref.pth" --format pth --dtype $dt --out "$WORK/$dt/exported.pth" > /dev/null
    check "tiny model exported as $dt .pth loads in torch with the original's names, order, shapes and bits" \
        $PY "$SRC/tests/reference/check_pth_with_torch.py" "$WORK/$dt/exported.pth" "$WORK/$dt/ref.pth"
done

"$MODRWKV" init --n-layer 3 --n-embd 128 --vocab 1000 --init official --dtype bf16 --out "$WORK/official.pth" > /dev/null
official_names() {
    $PY - "$WORK/official.pth" <<'PYEOF'
import sys, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
L, C, V, D = 3, 128, 1000, {"w": 32, "a": 32, "v": 32, "g": 64}
want = {"emb.weight": (V, C), "ln_out.weight": (C,), "ln_out.bias": (C,), "head.weight": (V, C),
        "blocks.0.ln0.weight": (C,), "blocks.0.ln0.bias": (C,)}
for l in range(L):
    b = "blocks.%d." % l
    for n in ["ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.ln_x.weight", "att.ln_x.bias"]:
        want[b + n] = (C,)
    for n in ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "v0", "k_k", "k_a"]:
        want[b + "att." + n] = (1, 1, C)
    for k in "wavg":
        want[b + "att.%s1" % k] = (C, D[k]); want[b + "att.%s2" % k] = (D[k], C)
    want[b + "att.r_k"] = (2, 64)
    for n in ["receptance", "key", "value", "output"]:
        want[b + "att.%s.weight" % n] = (C, C)
    want[b + "ffn.x_k"] = (1, 1, C); want[b + "ffn.key.weight"] = (4 * C, C); want[b + "ffn.value.weight"] = (C, 4 * C)
got = {k: tuple(v.shape) for k, v in sd.items()}
bad = sorted(set(got.items()) ^ set(want.items()))
dtypes = sorted({str(v.dtype) for v in sd.values()})
print("torch.load: %d tensors, dtypes %s, %d name/shape differences %s" % (len(got), dtypes, len(bad), bad[:4]))
sys.exit(0 if not bad and dtypes == ["torch.bfloat16"] else 1)
PYEOF
}
check "fresh official init loads in torch with exactly the official names and shapes" official_names
finish
