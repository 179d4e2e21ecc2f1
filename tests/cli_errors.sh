#!/usr/bin/env bash
# Bad input never crashes: each case exits with status 1 and one line on stderr that names the file /
# key / value at fault ("modrwkv: error: ...").
source "$(dirname "$0")/clilib.sh"
TINY=$SRC/tests/data/tiny-rwkv7-834K-fp32.pth
VOCAB=$SRC/datasets/vocab/rwkv_vocab_v20230424.txt

expect_error "missing checkpoint" "$WORK/none.pth: cannot open" \
    "$MODRWKV" logits --ckpt "$WORK/none.pth" --tokens 1 --out "$WORK/x.npy"
head -c 200000 "$TINY" > "$WORK/truncated.pth"
expect_error "truncated .pth" "truncated.pth" "$MODRWKV" logits --ckpt "$WORK/truncated.pth" --tokens 1 --out "$WORK/x.npy"
{ printf 'PK\003\004'; head -c 5000 /dev/urandom; } > "$WORK/corrupt.pth"
expect_error "corrupt zip" "corrupt.pth" "$MODRWKV" inspect "$WORK/corrupt.pth"
printf '\377\377\377\377\000\000\000\000{}' > "$WORK/huge-header.safetensors"
expect_error "safetensors header larger than the file" "huge-header.safetensors" "$MODRWKV" inspect "$WORK/huge-header.safetensors"
printf '\020\000\000\000\000\000\000\000{"a": not json }' > "$WORK/badjson.safetensors"
expect_error "safetensors with a broken JSON header" "badjson.safetensors" "$MODRWKV" inspect "$WORK/badjson.safetensors"
$PY - "$WORK/evil.pth" <<'PYEOF'
import sys, zipfile, pickle, os
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("evil/data.pkl", pickle.dumps(os.system, protocol=2))
    z.writestr("evil/version", "3\n")
PYEOF
expect_error "pickle with a forbidden global" "system" "$MODRWKV" logits --ckpt "$WORK/evil.pth" --tokens 1 --out "$WORK/x.npy"
expect_error "a directory instead of a checkpoint" "$WORK" "$MODRWKV" inspect "$WORK"
expect_error "token outside the vocabulary" "token 300" "$MODRWKV" logits --ckpt "$TINY" --tokens 1,300 --out "$WORK/x.npy"
expect_error "unknown logits mode" "--mode" "$MODRWKV" logits --ckpt "$TINY" --tokens 1 --mode fast --out "$WORK/x.npy"
expect_error "unknown export format" "onnx" "$MODRWKV" export --ckpt "$TINY" --format onnx --out "$WORK/x.onnx"
expect_error "export to a missing directory" "$WORK/no/such" "$MODRWKV" export --ckpt "$TINY" --format pth --out "$WORK/no/such/x.pth"

printf 'model:\n  n_layer: 2\n  n_layr: 3\n' > "$WORK/typo.yaml"
expect_error "unknown YAML key, with file and line" "typo.yaml:3: unknown key 'model.n_layr'" "$MODRWKV" train "$WORK/typo.yaml"
printf 'train:\n  lr: fast\n' > "$WORK/badval.yaml"
expect_error "bad YAML value" "badval.yaml:2" "$MODRWKV" train "$WORK/badval.yaml"
printf 'data:\n  train: %s/missing.txt\n  tokenizer: bytes\nrun_dir: %s/run\n' "$WORK" "$WORK" > "$WORK/nodata.yaml"
expect_error "missing training data" "missing.txt" "$MODRWKV" train "$WORK/nodata.yaml"
printf 'data:\n  train: %s/tests/data/lambada_test.jsonl\n  tokenizer: bytes\n  val_fraction: 0.00001\nrun_dir: %s/run2\n' "$SRC" "$WORK" > "$WORK/tinyval.yaml"
expect_error "validation split too small for the context" "raise data.val_fraction" "$MODRWKV" train "$WORK/tinyval.yaml"
printf 'data:\n  train: %s\n  format: text\n  tokenizer: bytes\nrun_dir: %s/run3\n' "$WORK" "$WORK" > "$WORK/dirdata.yaml"
expect_error "a directory as a text corpus" "not a regular file" "$MODRWKV" train "$WORK/dirdata.yaml"
expect_error "unknown --set key" "train.lrr" "$MODRWKV" train "$WORK/nodata.yaml" --set train.lrr=1
expect_error "unknown option" "--frobnicate" "$MODRWKV" train "$WORK/nodata.yaml" --frobnicate

head -n 300 "$VOCAB" > "$WORK/badvocab.txt"
echo "301 'abc' 7" >> "$WORK/badvocab.txt"
expect_error "vocab file with a bad line (length mismatch)" "badvocab.txt:301" \
    "$MODRWKV" tokenize --vocab "$WORK/badvocab.txt" --text hi
expect_error "decode an id outside the vocabulary" "70000" "$MODRWKV" tokenize --vocab "$VOCAB" --decode 1,70000
expect_error "generate with an empty prompt" "prompt" "$MODRWKV" generate --ckpt "$TINY" --prompt "" --bytes
expect_error "init with n_embd not a multiple of the head size" "head_size" \
    "$MODRWKV" init --n-layer 1 --n-embd 100 --vocab 10 --out "$WORK/x.pth"
expect_error "unknown command" "unknown command" "$MODRWKV" frobnicate
finish
