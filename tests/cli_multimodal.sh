#!/usr/bin/env bash
# cli_multimodal.sh — the multimodal CLI end to end on the demo data (byte tokenizer, tiny sizes):
# train a vision model with a Bone adapter (stage 2, base frozen), generate from an image, export the merged
# model and check its logits equal the unmerged model's, export the adapter alone, evaluate digit QA; train
# an audio model and generate from a WAV clip; bad media arguments give one-line errors.
source "$(dirname "$0")/clilib.sh" "$@"
D=$WORK/data
"$MODRWKV" data demo --out "$D" --tokenizer bytes > /dev/null || { fail "data demo"; finish; exit 1; }

# one digit PNG and one spoken-digit clip out of the test shards (h5py; WAV written with Python's wave module)
"$PY" - "$D" "$WORK" <<'PYEOF'
import glob, h5py, sys, wave, numpy as np
d, out = sys.argv[1], sys.argv[2]
h = h5py.File(sorted(glob.glob(d + "/digits_qa/test/*.h5"))[0], "r")
o, n = h["media/payload_offsets"][0], h["media/payload_sizes"][0]
open(out + "/digit.png", "wb").write(bytes(h["img/bytes"][o:o + n]))
h = h5py.File(sorted(glob.glob(d + "/spoken_digits/test/*.h5"))[0], "r")
o, n = h["media/payload_offsets"][0], h["media/payload_sizes"][0]
pcm = np.asarray(h["aud/pcm"][o:o + n], dtype="<i2")
w = wave.open(out + "/clip.wav", "wb"); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(pcm.tobytes()); w.close()
PYEOF
check "a digit PNG and a WAV clip were extracted" test -s "$WORK/digit.png" -a -s "$WORK/clip.wav"

VISION=(--set model.vision.kind=siglip --set model.vision.image_size=32 --set model.vision.patch=8
        --set model.vision.width=32 --set model.vision.layers=1 --set model.vision.heads=2 --set model.vision.mlp=64)
cat > "$WORK/v.yaml" <<YEOF
run_dir: $WORK/runs/vision
model: {init: official, n_layer: 1, n_embd: 64, head_size: 32,
        projector: {kind: conv_mlp, conv_kernel: 3, conv_stride: 2, ratio: 2}, adapter: {kind: bone, r: 16}}
data: {train: $D/digits_qa/train, val: $D/digits_qa/val, tokenizer: bytes}
train: {stage: 2, ctx_len: 256, micro_batch: 2, max_steps: 4, eval_every: 4, eval_batches: 1, log_every: 1}
YEOF
"$MODRWKV" train "$WORK/v.yaml" "${VISION[@]}" > "$WORK/train.txt" 2>&1
check "vision stage 2 (projector + Bone adapter) trains 4 steps and saves" test -s "$WORK/runs/vision/checkpoints/step-00000004.safetensors"
grep -q "trained (train.stage 2)" "$WORK/train.txt" && pass "the run reports trained vs total parameters" || fail "no parameter report: $(cat "$WORK/train.txt")"
CK=$WORK/runs/vision/checkpoints/step-00000004.safetensors

out=$("$MODRWKV" generate --ckpt "$CK" --image "$WORK/digit.png" --prompt "What digit is this?" --temperature 0 --max-tokens 4 2>&1)
rc=$?
[ $rc = 0 ] && pass "generate --image runs (answer: '$out')" || fail "generate --image: exit $rc: $out"
expect_error "generate --audio on a model without an audio encoder" "no audio encoder" \
    "$MODRWKV" generate --ckpt "$CK" --audio "$WORK/clip.wav" --prompt "Transcribe."
expect_error "generate --image with a missing file" "nope.png" \
    "$MODRWKV" generate --ckpt "$CK" --image "$WORK/nope.png" --prompt "What digit is this?"

# merge + export gives the logits of the unmerged adapter model
"$MODRWKV" export --ckpt "$CK" --format pth --dtype fp32 --out "$WORK/merged.pth" > /dev/null
"$MODRWKV" logits --ckpt "$CK" --bytes --text "What digit is this? Yes" --out "$WORK/a.npy" > /dev/null
"$MODRWKV" logits --ckpt "$WORK/merged.pth" --bytes --text "What digit is this? Yes" --out "$WORK/b.npy" > /dev/null
diff=$("$PY" -c "import numpy as np; a=np.load('$WORK/a.npy'); b=np.load('$WORK/b.npy'); print(float(np.abs(a-b).max()/np.abs(a).max()))")
"$PY" -c "import sys; sys.exit(0 if $diff < 1e-4 else 1)" && pass "merged export = unmerged adapter model (max rel diff $diff, tol 1e-4)" \
    || fail "merged logits differ: $diff"
"$MODRWKV" export --ckpt "$CK" --adapter-only --out "$WORK/bone.safetensors" > /dev/null
n=$("$MODRWKV" inspect "$WORK/bone.safetensors" | grep -c "\.bone")
[ "$n" = 6 ] && pass "adapter-only export holds the 6 Bone tensors of the layer" || fail "adapter-only export: $n .bone tensors"

# stage 2 carries the stage-1 projector and encoder over (model.projector.init / model.vision.init): with lr 0
# the new run's first checkpoint holds exactly the stage-1 tensors
"$MODRWKV" train "$WORK/v.yaml" "${VISION[@]}" --set run_dir="$WORK/runs/carry" --set model.init="$CK" \
    --set model.vision.init="$CK" --set model.projector.init="$CK" --set model.adapter.kind=none \
    --set train.trainable=projector,backbone --set train.lr=0 --set train.max_steps=1 > "$WORK/carry.txt" 2>&1
"$PY" - "$CK" "$WORK/runs/carry/checkpoints/step-00000001.safetensors" <<'PYEOF' && pass "stage 2 starts from the stage-1 projector and encoder (bitwise)" || fail "projector/encoder not carried over: $(tail -n 3 "$WORK/carry.txt")"
import json, struct, sys
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
a, b = read(sys.argv[1]), read(sys.argv[2])
keys = [k for k in a if k.startswith(("vision_proj.", "vision.")) ]
print(len(keys), "projector/encoder tensors compared")
sys.exit(0 if keys and all(a[k] == b[k] for k in keys) else 1)
PYEOF

"$MODRWKV" eval --ckpt "$CK" --data "$D/digits_qa/test" --metric accuracy --max-samples 3 --out "$WORK/eval.json" > "$WORK/eval.txt" 2>&1
check "eval writes eval.json for digit QA" test -s "$WORK/eval.json"

AUDIO=(--set model.audio.kind=whisper --set model.audio.n_mels=80 --set model.audio.width=32 --set model.audio.layers=1
       --set model.audio.heads=2 --set model.audio.mlp=64)
cat > "$WORK/a.yaml" <<YEOF
run_dir: $WORK/runs/audio
model: {init: official, n_layer: 1, n_embd: 64, head_size: 32, projector: {kind: mlp, ratio: 2}}
data: {train: $D/spoken_digits/train, val: $D/spoken_digits/val, tokenizer: bytes}
train: {stage: 1, ctx_len: 256, micro_batch: 2, max_steps: 3, eval_every: 3, eval_batches: 1}
YEOF
"$MODRWKV" train "$WORK/a.yaml" "${AUDIO[@]}" > "$WORK/atrain.txt" 2>&1
check "audio stage 1 (projector only) trains 3 steps" test -s "$WORK/runs/audio/checkpoints/step-00000003.safetensors"
out=$("$MODRWKV" generate --ckpt "$WORK/runs/audio/checkpoints/step-00000003.safetensors" --audio "$WORK/clip.wav" \
      --prompt "Transcribe." --temperature 0 --max-tokens 4 --stream 2>&1)
rc=$?
[ $rc = 0 ] && pass "generate --audio --stream runs (answer: '$out')" || fail "generate --audio: exit $rc: $out"
finish
