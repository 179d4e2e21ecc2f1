#!/usr/bin/env bash
# `modrwkv data` end to end: real fixtures (PNG images of the handwritten digits, WebDataset tars, WAV audio in a
# LibriSpeech layout, JSONL) are converted, verified and inspected; the same input gives byte-identical shards;
# a parallel conversion (processes with mpirun's environment, and mpirun itself when present) gives the same
# samples as one process; a tampered shard fails `data verify`; every bad input is one line naming the file and
# the sample; --skip-bad counts instead of stopping.
source "$(dirname "$0")/clilib.sh"

# ------------------------------------------------------------------------------------------- fixtures (python3)
$PY - "$WORK" "$SRC/datasets/demo/digits.csv.gz" <<'PYEOF'
import gzip, io, json, math, os, struct, sys, tarfile, wave, zlib
work, digits = sys.argv[1], sys.argv[2]
rows = [list(map(int, l.split(","))) for l in gzip.open(digits, "rt").read().split("\n")[:8]]

def png(pix):  # 8x8 grey, values 0..16 scaled to 0..255
    raw = b"".join(b"\x00" + bytes(v * 255 // 16 for v in pix[r * 8:(r + 1) * 8]) for r in range(8))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

def wav(rate, channels, seconds, freq=440.0):
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(channels); w.setsampwidth(2); w.setframerate(rate)
        frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate))) * channels
                          for i in range(int(seconds * rate)))
        w.writeframes(frames)
    return b.getvalue()

def put(rel, data):
    p = os.path.join(work, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").write(data if isinstance(data, bytes) else data.encode())

def tar(rel, members):
    p = os.path.join(work, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    with tarfile.open(p, "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mtime = 1700000000; t.addfile(ti, io.BytesIO(data))

conv = lambda q, a: [{"from": "human", "value": q}, {"from": "gpt", "value": a}]
samples = []
for i, r in enumerate(rows[:4]):
    put(f"llava/img/d{i}.png", png(r[:64]))
    samples.append({"id": f"d{i}", "image": f"d{i}.png", "conversations": conv("<image>\nWhat digit is this?", str(r[64]))})
samples.append({"id": "t0", "conversations": conv("Say hi.", "Hi!")})
put("llava/data.json", json.dumps(samples, indent=1))
put("llava/img/garbage.png", b"\x89PNG\r\n\x1a\nnot really")
bad = samples[:1] + [{"id": "m1", "image": "nope.png", "conversations": conv("<image>", "x")},
                     {"id": "g1", "image": "garbage.png", "conversations": conv("<image>", "x")}]
put("llava/bad.json", json.dumps(bad))
put("llava/missing.json", json.dumps(bad[1:2]))
put("llava/garbage.json", json.dumps(bad[2:3]))
put("llava/rank1bad.json", json.dumps(bad[:2]))   # sample 1 (rank 1 of 2) is bad

tar("wds/shard-000000.tar", [("k0.png", png(rows[4][:64])), ("k0.txt", b"a handwritten digit"),
                             ("k1.png", png(rows[5][:64])),
                             ("k1.json", json.dumps({"conversations": conv("Which digit? <image>", "5")}).encode()),
                             ("k2.txt", b"a plain document"), ("k2.cls", b"3")])
tar("wds/shard-000001.tar", [("k3.wav", wav(22050, 1, 0.3)), ("k3.txt", b"A TONE")])
tar("wds/split.tar", [("a.txt", b"x"), ("b.txt", b"y"), ("a.png", png(rows[0][:64]))])

put("libri/1/2/1-2.trans.txt", "1-2-0000 HELLO WORLD\n1-2-0001 GOOD BYE\n")
put("libri/1/2/1-2-0000.wav", wav(16000, 1, 0.25))
put("libri/1/2/1-2-0001.wav", wav(8000, 2, 0.2))
put("text/corpus.jsonl", '{"text": "first document"}\n{"text": "second"}\n')
PYEOF

D="$MODRWKV data"
COMMON=(--tokenizer bytes --image-tokens 4)
n_samples() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["n_samples"])' "$1/manifest.json"; }
check_count() { # check_count NAME DIR WANT
    local got; got=$(n_samples "$2" 2>/dev/null || echo none)
    if [ "$got" = "$3" ]; then pass "$1: $got samples"; else fail "$1: $got samples, expected $3"; fi
}

# ------------------------------------------------------------------------------------------- help
for sub in convert merge inspect verify demo bench; do
    check "data $sub --help" bash -c "$D $sub --help | grep -q usage"
done
check "data --help lists the subcommands" bash -c "$D --help | grep -q convert"

# ------------------------------------------------------------------------------------------- conversions
check "llava-json converts" $D convert --from llava-json --json "$WORK/llava/data.json" --images "$WORK/llava/img" \
    --out "$WORK/out/llava" "${COMMON[@]}"
check_count "llava-json" "$WORK/out/llava" 5
check "data verify passes on the LLaVA shards" $D verify "$WORK/out/llava"
check "data inspect prints the dataset" bash -c "$D inspect '$WORK/out/llava' | grep -q ."

check "webdataset converts a brace pattern" $D convert --from webdataset --tar "$WORK/wds/shard-{000000..000001}.tar" \
    --out "$WORK/out/wds" --shard-size 2 "${COMMON[@]}"
check_count "webdataset" "$WORK/out/wds" 4
check "--shard-size 2 rolls shards" test -f "$WORK/out/wds/train-000001.h5"
check "data verify passes on the WebDataset shards" $D verify "$WORK/out/wds"
check "audio-folder converts (WAV 16 kHz and 8 kHz stereo)" $D convert --from audio-folder --root "$WORK/libri" \
    --out "$WORK/out/libri" "${COMMON[@]}"
check_count "audio-folder" "$WORK/out/libri" 2
check "data verify passes on the audio shards" $D verify "$WORK/out/libri"
check "jsonl-text converts" $D convert --from jsonl-text --in "$WORK/text/corpus.jsonl" --out "$WORK/out/jsonl" \
    --tokenizer bytes --compression none
check_count "jsonl-text" "$WORK/out/jsonl" 2

$D convert --from llava-json --json "$WORK/llava/data.json" --images "$WORK/llava/img" --out "$WORK/out/llava2" \
    "${COMMON[@]}" > /dev/null
check "the same input gives byte-identical shards" cmp "$WORK/out/llava/train-000000.h5" "$WORK/out/llava2/train-000000.h5"

# ------------------------------------------------------------------------------------------- parallel
( OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 $D convert --from webdataset --tar "$WORK/wds/shard-{000000..000001}.tar" \
    --out "$WORK/out/par" "${COMMON[@]}" > "$WORK/rank1.txt" 2>&1 ) &
OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 $D convert --from webdataset --tar "$WORK/wds/shard-{000000..000001}.tar" \
    --out "$WORK/out/par" --merge-timeout 60 "${COMMON[@]}" > "$WORK/rank0.txt" 2>&1
rc0=$?
wait
check "2 processes with mpirun's environment: rank 0 merges" test "$rc0" = 0 -a -f "$WORK/out/par/manifest.json"
check_count "2 processes" "$WORK/out/par" 4
check "data verify passes on the merged dataset" $D verify "$WORK/out/par"
if command -v mpirun > /dev/null; then
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 3 \
        $D convert --from llava-json --json "$WORK/llava/data.json" --images "$WORK/llava/img" --out "$WORK/out/mpi" \
        --merge-timeout 120 "${COMMON[@]}" > "$WORK/mpi.txt" 2>&1
    check "mpirun -np 3 data convert" test -f "$WORK/out/mpi/manifest.json"
    check_count "mpirun -np 3" "$WORK/out/mpi" 5
    check "data verify passes on the mpirun dataset" $D verify "$WORK/out/mpi"
fi
OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 $D convert --from llava-json --json "$WORK/llava/rank1bad.json" \
    --images "$WORK/llava/img" --out "$WORK/out/fail" "${COMMON[@]}" > /dev/null 2>&1
OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 expect_error "rank 0 reports the failed rank" "rank 1 failed" \
    $D convert --from llava-json --json "$WORK/llava/rank1bad.json" --images "$WORK/llava/img" --out "$WORK/out/fail" \
    --merge-timeout 30 "${COMMON[@]}"
expect_error "rank 0 waits a bounded time" "still missing" \
    $D convert --from llava-json --json "$WORK/llava/data.json" --images "$WORK/llava/img" --out "$WORK/out/lonely" \
    --rank 0 --world 2 --merge-timeout 1 "${COMMON[@]}"

# ------------------------------------------------------------------------------------------- tampering, bad input
$PY - "$WORK/out/llava/train-000000.h5" <<'PYEOF'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 0xFF; open(p, "wb").write(bytes(b))
PYEOF
expect_error "data verify fails on a tampered shard" "train-000000.h5" $D verify "$WORK/out/llava"
expect_error "missing image" "nope.png" $D convert --from llava-json --json "$WORK/llava/missing.json" \
    --images "$WORK/llava/img" --out "$WORK/out/bad" "${COMMON[@]}"
expect_error "undecodable image names the sample" "sample 'g1'" $D convert --from llava-json \
    --json "$WORK/llava/garbage.json" --images "$WORK/llava/img" --out "$WORK/out/bad" "${COMMON[@]}"
expect_error "tar members not contiguous" "split.tar: sample 'a'" $D convert --from webdataset --tar "$WORK/wds/split.tar" \
    --out "$WORK/out/bad" "${COMMON[@]}"
expect_error "unknown --from" "csv" $D convert --from csv --in x --out "$WORK/out/bad"
expect_error "--from needs its input option" "--json" $D convert --from llava-json --out "$WORK/out/bad"
expect_error "no --out" "--out" $D convert --from jsonl-text --in "$WORK/text/corpus.jsonl"
expect_error "bad --shard-size" "--shard-size" $D convert --from jsonl-text --in "$WORK/text/corpus.jsonl" \
    --out "$WORK/out/bad" --shard-size 12XB
expect_error "bad --compression" "--compression" $D convert --from jsonl-text --in "$WORK/text/corpus.jsonl" \
    --out "$WORK/out/bad" --compression zstd
expect_error "unknown option" "--frobnicate" $D convert --frobnicate
expect_error "unknown subcommand" "frobnicate" $D frobnicate
expect_error "verify a directory without a dataset" "$WORK/text" $D verify "$WORK/text"

$D convert --from llava-json --json "$WORK/llava/bad.json" --images "$WORK/llava/img" --out "$WORK/out/skip" \
    --skip-bad "${COMMON[@]}" > "$WORK/skip.out" 2> "$WORK/skip.err"
check "--skip-bad exits 0" test $? = 0
check "--skip-bad warns once per bad sample" test "$(grep -c 'modrwkv: warning:' "$WORK/skip.err")" = 2
check "--skip-bad prints the count" grep -q "2 bad samples skipped" "$WORK/skip.out"
check_count "--skip-bad keeps the good sample" "$WORK/out/skip" 1
finish
