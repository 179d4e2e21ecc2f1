#!/usr/bin/env bash
# `modrwkv logits` on the real tiny RWKV-7 (tests/data): the logits after bytes 34,105,110 match the
# expected file (max |diff| < 1e-4) in parallel and RNN mode, from the fp32 and the bf16 .pth, given as
# --tokens or as --text with the byte tokenizer; a longer text agrees between the modes to 1e-4.
source "$(dirname "$0")/clilib.sh"
EXPECTED=$SRC/tests/data/tiny-rwkv7-834K.expected-logits-34-105-110.f32

compare_last() { # compare_last NPY: last row vs the expected logits
    $PY - "$1" "$EXPECTED" <<'PYEOF'
import sys, struct
def load_npy(path):
    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY", "not an npy file"
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10:10 + hlen].decode()
    shape = eval(header)["shape"]
    vals = struct.unpack("<%df" % (shape[0] * shape[1]), data[10 + hlen:])
    return shape, vals
shape, vals = load_npy(sys.argv[1])
exp = struct.unpack("<256f", open(sys.argv[2], "rb").read())
last = vals[(shape[0] - 1) * shape[1]:]
err = max(abs(a - b) for a, b in zip(last, exp))
print("shape %s, max |diff| vs expected %.3e (tol 1e-4)" % (shape, err))
sys.exit(0 if shape == (3, 256) and err < 1e-4 else 1)
PYEOF
}

for dt in fp32 bf16; do
    for mode in parallel rnn; do
        "$MODRWKV" logits --ckpt "$SRC/tests/data/tiny-rwkv7-834K-$dt.pth" --tokens 34,105,110 --mode $mode \
            --out "$WORK/$dt-$mode.npy" > /dev/null
        check "logits $dt $mode --tokens" compare_last "$WORK/$dt-$mode.npy"
    done
done
"$MODRWKV" logits --ckpt "$SRC/tests/data/tiny-rwkv7-834K-fp32.pth" --text '"in' --bytes --out "$WORK/text.npy" > /dev/null
check "logits fp32 --text with the byte tokenizer" compare_last "$WORK/text.npy"

TEXT='The quick brown fox jumps over the lazy dog; RWKV-7 reads it in parallel and as an RNN, 16 steps per chunk and beyond.'
"$MODRWKV" logits --ckpt "$SRC/tests/data/tiny-rwkv7-834K-fp32.pth" --text "$TEXT" --bytes --mode parallel --out "$WORK/p.npy" > /dev/null
"$MODRWKV" logits --ckpt "$SRC/tests/data/tiny-rwkv7-834K-fp32.pth" --text "$TEXT" --bytes --mode rnn --out "$WORK/r.npy" > /dev/null
agree() {
    $PY - "$WORK/p.npy" "$WORK/r.npy" <<'PYEOF'
import sys, struct
def load(path):
    d = open(path, "rb").read(); h = struct.unpack("<H", d[8:10])[0]
    return struct.unpack("<%df" % ((len(d) - 10 - h) // 4), d[10 + h:])
a, b = load(sys.argv[1]), load(sys.argv[2])
err = max(abs(x - y) for x, y in zip(a, b))
print("%d logits, parallel vs rnn max |diff| %.3e (tol 1e-4)" % (len(a), err))
sys.exit(0 if len(a) == len(b) and len(a) > 0 and err < 1e-4 else 1)
PYEOF
}
check "long text: parallel == rnn" agree
finish
