#!/usr/bin/env python3
"""h5py_shards.py — an independent implementation of datasets/FORMAT.md with h5py + numpy (Debian's
python3-h5py), used by tests/test_shards_h5py.c to check both directions of compatibility.

  h5py_shards.py write DIR   writes DIR/train-000000.h5 + DIR/manifest.json holding the FIXTURE samples,
                             the way a Python tool would (h5py defaults: variable-length string attributes,
                             uint32 tokens, some datasets contiguous, some chunked with gzip + fletcher32)
  h5py_shards.py check DIR   reads a dataset written by modrwkv, checks every rule of FORMAT.md (manifest,
                             checksums, attributes, dtypes, offsets, placeholders == media, payload shapes)
                             and that its samples equal the FIXTURE; prints one line and exits 0, or prints
                             what is wrong and exits 1

The fixture is defined by integer formulas so that the C test builds the very same samples
(fixture_sample in tests/test_shards_h5py.c).
"""
import hashlib
import json
import os
import sys

import h5py
import numpy as np

FORMAT, VERSION = "modrwkv-shards", 1
PH_IMAGE, PH_AUDIO, PH_TS = 65530, 65531, 65532
ENCODED, PIXELS, AUDIO, TIMESERIES, FEATURES = 1, 2, 3, 4, 5
PAYLOAD = {ENCODED: "img/bytes", PIXELS: "pix/data", AUDIO: "aud/pcm", TIMESERIES: "ts/data", FEATURES: "feat/data"}
SHAPE = {PIXELS: "pix/shape", TIMESERIES: "ts/shape", FEATURES: "feat/shape"}
KIND_NAME = {ENCODED: "image", PIXELS: "pixels", AUDIO: "audio", TIMESERIES: "timeseries", FEATURES: "features"}

# Each sample: a list of segments ("text", n) or (kind, n_placeholder, placeholder_id, shape).
FIXTURE_SPEC = [
    ("fx-0", [("text", 12)]),
    ("fx-1", [("text", 2), (ENCODED, 4, PH_IMAGE, (37,)), ("text", 4)]),
    ("fx-2", [("text", 1), (PIXELS, 3, PH_IMAGE, (2, 3, 3)), ("text", 4), (AUDIO, 5, PH_AUDIO, (50,)), ("text", 2)]),
    ("fx-3", [(AUDIO, 9, PH_AUDIO, (33,))]),
    ("fx-4", [("text", 5), (TIMESERIES, 2, PH_TS, (6, 2)), ("text", 8)]),
    ("fx-5", [(FEATURES, 3, PH_IMAGE, (3, 4, 4)), ("text", 7), (FEATURES, 4, PH_AUDIO, (2, 5, 2)), ("text", 9),
              (PIXELS, 2, PH_IMAGE, (1, 1, 1)), ("text", 5)]),
    ("fx-6 \u00fcn\u00efcode/key", [("text", 7)]),
]


def payload(kind, shape, i):
    """The payload of an item of sample i as the bytes stored (little-endian)."""
    n = int(np.prod(shape))
    j = np.arange(n, dtype=np.int64)
    if kind == ENCODED:
        b = ((j * 7 + i * 13) & 255).astype(np.uint8)
        b[:8] = np.frombuffer(b"\x89PNG\r\n\x1a\n", np.uint8)
        return b
    if kind == PIXELS:
        return ((j * 5 + i) & 255).astype(np.uint8)
    if kind == AUDIO:
        return (((j * 301 - 7000 + i + 32768) % 65536) - 32768).astype(np.int16)
    if kind == TIMESERIES:
        return (j * 0.25 - 1.5 + i).astype(np.float32)
    if shape[2] == 4:  # float32 features
        return (j[: n // 4] * 0.5 - 2.0).astype("<f4").view(np.uint8)
    return ((j[: n // 2] * 977 + 123 + i) % 0x7C00).astype("<u2").view(np.uint8)  # float16 bits


def fixture():
    """[(key, tokens uint32, mask uint8, [(kind, pos, n_ph, shape, payload)])]"""
    out = []
    for i, (key, segments) in enumerate(FIXTURE_SPEC):
        tokens, mask, items = [], [], []
        for seg in segments:
            if seg[0] == "text":
                for _ in range(seg[1]):
                    p = len(tokens)
                    tokens.append((1 + 7919 * i + 104729 * p) % 65000)
                    mask.append(1 if (p + i) % 3 != 0 else 0)
            else:
                kind, n_ph, ph, shape = seg
                items.append((kind, len(tokens), n_ph, shape, payload(kind, shape, i)))
                tokens += [ph] * n_ph
                mask += [0] * n_ph
        out.append((key, np.array(tokens, np.uint32), np.array(mask, np.uint8), items))
    return out


# ------------------------------------------------------------------------------------------------ writing
def write(d):
    os.makedirs(d, exist_ok=True)
    samples = fixture()
    name = "train-000000.h5"
    path = os.path.join(d, name)
    keys = [s[0].encode() for s in samples]
    key_off = np.cumsum([0] + [len(k) for k in keys]).astype(np.int64)
    tok_off = np.cumsum([0] + [len(s[1]) for s in samples]).astype(np.int64)
    media_off = np.cumsum([0] + [len(s[3]) for s in samples]).astype(np.int64)
    items = [it for s in samples for it in s[3]]
    pay_off, next_off, data, shapes = [], {k: 0 for k in PAYLOAD}, {k: [] for k in PAYLOAD}, {k: [] for k in SHAPE}
    for kind, _, _, shape, pl in items:
        size = int(np.prod(shape))   # elements of the kind's dataset (features: n_tokens x dim x dtype bytes)
        pay_off.append((next_off[kind], size))
        next_off[kind] += size
        data[kind].append(pl)
        if kind in SHAPE:
            shapes[kind].append(shape)
    n_tokens = int(tok_off[-1])
    with h5py.File(path + ".tmp", "w") as f:
        f.attrs.update({"format": FORMAT, "format_version": VERSION, "split": "train", "tokenizer": "world",
                        "vocab_size": 65536, "placeholder_image": PH_IMAGE, "placeholder_audio": PH_AUDIO,
                        "placeholder_timeseries": PH_TS, "n_samples": len(samples), "n_tokens": n_tokens,
                        "n_media": len(items), "created_by": "tests/reference/h5py_shards.py"})
        gz = dict(chunks=True, compression="gzip", compression_opts=4, shuffle=True, fletcher32=True)
        f.create_dataset("meta/key_bytes", data=np.frombuffer(b"".join(keys), np.uint8))
        f.create_dataset("meta/key_offsets", data=key_off)
        f.create_dataset("tok/tokens", data=np.concatenate([s[1] for s in samples]), **gz)
        f.create_dataset("tok/offsets", data=tok_off, **gz)
        f.create_dataset("tok/loss_mask", data=np.concatenate([s[2] for s in samples]), **gz)
        f.create_dataset("media/offsets", data=media_off)
        f.create_dataset("media/kind", data=np.array([it[0] for it in items], np.uint8))
        f.create_dataset("media/placeholder_pos", data=np.array([it[1] for it in items], np.int32))
        f.create_dataset("media/n_placeholder", data=np.array([it[2] for it in items], np.int32))
        f.create_dataset("media/payload_offsets", data=np.array([p[0] for p in pay_off], np.int64))
        f.create_dataset("media/payload_sizes", data=np.array([p[1] for p in pay_off], np.int64))
        for kind, chunks in data.items():
            if chunks:
                f.create_dataset(PAYLOAD[kind], data=np.concatenate(chunks), **(gz if kind != ENCODED else {}))
        for kind, rows in shapes.items():
            if rows:
                f.create_dataset(SHAPE[kind], data=np.array(rows, np.int32))
        f["aud/pcm"].attrs["sample_rate"] = 16000
    os.replace(path + ".tmp", path)
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    kinds = sorted({it[0] for it in items})
    manifest = {"format": FORMAT, "format_version": VERSION, "split": "train", "tokenizer": "world",
                "vocab_size": 65536, "modalities": ["text"] + [KIND_NAME[k] for k in kinds],
                "n_samples": len(samples), "n_tokens": n_tokens, "n_media": len(items),
                "shards": [{"file": name, "n_samples": len(samples), "n_tokens": n_tokens, "n_media": len(items),
                            "sha256": sha}]}
    with open(os.path.join(d, "manifest.json"), "w") as fp:
        json.dump(manifest, fp, indent=2)
    print(f"h5py wrote {path}: {len(samples)} samples, {n_tokens} tokens, {len(items)} media items")


# ------------------------------------------------------------------------------------------------ checking
class Bad(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Bad(msg)


def text_attr(f, name):
    v = f.attrs[name]
    return v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v)


def check_offsets(name, off, n, total, strict):
    need(off.shape == (n + 1,) and off[0] == 0, f"{name}: shape {off.shape} or first value {off[0]} wrong")
    step = np.diff(off)
    need(np.all(step >= (1 if strict else 0)), f"{name}: not {'increasing' if strict else 'monotone'}")
    need(off[-1] == total, f"{name}: ends at {off[-1]}, data has {total}")


def read_items(f, lo, hi, next_off, rows, where):
    """Items [lo, hi) of one sample, checked back to back per kind and against their shape rows."""
    items = []
    for j in range(lo, hi):
        kind, o, n = int(f["media/kind"][j]), int(f["media/payload_offsets"][j]), int(f["media/payload_sizes"][j])
        need(kind in PAYLOAD, f"{where}: item {j} has kind {kind}")
        need(o == next_off[kind] and n >= 1, f"{where}: item {j} payload not back to back")
        next_off[kind] += n
        shape = ()
        if kind in SHAPE:
            shape = tuple(int(x) for x in f[SHAPE[kind]][rows[kind]])
            rows[kind] += 1
            need(int(np.prod(shape)) == n, f"{where}: item {j} size {n} != shape {shape}")
        else:
            shape = (n,)
        raw = f[PAYLOAD[kind]][o:o + n]
        pl = raw if kind != FEATURES else raw.astype(np.uint8)
        items.append((kind, int(f["media/placeholder_pos"][j]), int(f["media/n_placeholder"][j]), shape, pl))
    return items


def check_placeholders(tokens, mask, items, where):
    covered = np.zeros(len(tokens), bool)
    prev_end = 0
    for kind, pos, n, _, _ in items:
        need(n >= 1 and pos >= prev_end and pos + n <= len(tokens), f"{where}: bad placeholder range [{pos}, {pos + n})")
        want = {ENCODED: PH_IMAGE, PIXELS: PH_IMAGE, AUDIO: PH_AUDIO, TIMESERIES: PH_TS}.get(kind, tokens[pos])
        need(want in (PH_IMAGE, PH_AUDIO, PH_TS) and np.all(tokens[pos:pos + n] == want), f"{where}: placeholders != media")
        need(np.all(mask[pos:pos + n] == 0), f"{where}: trained placeholder")
        covered[pos:pos + n] = True
        prev_end = pos + n
    stray = np.isin(tokens, [PH_IMAGE, PH_AUDIO, PH_TS]) & ~covered
    need(not stray.any(), f"{where}: stray placeholder")


def check_shard(path, entry):
    need(hashlib.sha256(open(path, "rb").read()).hexdigest() == entry["sha256"], f"{path}: sha256 mismatch")
    out = []
    with h5py.File(path, "r") as f:
        need(text_attr(f, "format") == FORMAT and int(f.attrs["format_version"]) == VERSION, f"{path}: format")
        for name, v in (("placeholder_image", PH_IMAGE), ("placeholder_audio", PH_AUDIO), ("placeholder_timeseries", PH_TS)):
            need(int(f.attrs[name]) == v, f"{path}: {name}")
        n, t, m = int(f.attrs["n_samples"]), int(f.attrs["n_tokens"]), int(f.attrs["n_media"])
        need((n, t, m) == (entry["n_samples"], entry["n_tokens"], entry["n_media"]), f"{path}: counts differ from manifest")
        vocab = int(f.attrs["vocab_size"])
        need(f["tok/tokens"].dtype == (np.uint16 if vocab <= 65536 else np.uint32), f"{path}: token dtype")
        for name in f["tok"]:
            need(f["tok"][name].fletcher32 and f["tok"][name].chunks is not None, f"{path}: tok/{name} not checksummed")
        for kind, dtype in ((ENCODED, np.uint8), (PIXELS, np.uint8), (AUDIO, np.int16), (TIMESERIES, np.float32),
                            (FEATURES, np.uint8)):
            need(PAYLOAD[kind] not in f or f[PAYLOAD[kind]].dtype == dtype, f"{path}: {PAYLOAD[kind]} dtype")
        if "aud" in f:
            need(int(f["aud/pcm"].attrs["sample_rate"]) == 16000, f"{path}: sample_rate")
        key_off, tok_off, media_off = f["meta/key_offsets"][:], f["tok/offsets"][:], f["media/offsets"][:]
        check_offsets("key_offsets", key_off, n, len(f["meta/key_bytes"]), True)
        check_offsets("tok/offsets", tok_off, n, t, True)
        check_offsets("media/offsets", media_off, n, m, False)
        tokens, mask = f["tok/tokens"][:].astype(np.uint32), f["tok/loss_mask"][:]
        next_off, rows = {k: 0 for k in PAYLOAD}, {k: 0 for k in SHAPE}
        for i in range(n):
            key = f["meta/key_bytes"][key_off[i]:key_off[i + 1]].tobytes().decode()
            where = f"{path}: sample '{key}' (#{i})"
            tk, mk = tokens[tok_off[i]:tok_off[i + 1]], mask[tok_off[i]:tok_off[i + 1]]
            items = read_items(f, media_off[i], media_off[i + 1], next_off, rows, where)
            check_placeholders(tk, mk, items, where)
            need(np.all((tk < vocab) | np.isin(tk, [PH_IMAGE, PH_AUDIO, PH_TS])), f"{where}: token >= vocab_size")
            out.append((key, tk, mk, items))
        for kind, end in next_off.items():
            need(end == (len(f[PAYLOAD[kind]]) if PAYLOAD[kind] in f else 0), f"{path}: {PAYLOAD[kind]} length")
    return out


def same_sample(got, want):
    key, tk, mk, items = got
    need(key == want[0], f"key {key!r} != {want[0]!r}")
    need(np.array_equal(tk, want[1]) and np.array_equal(mk, want[2]), f"sample {key!r}: tokens or mask differ")
    need(len(items) == len(want[3]), f"sample {key!r}: {len(items)} media items, want {len(want[3])}")
    for a, b in zip(items, want[3]):
        need(a[:3] == b[:3], f"sample {key!r}: item kind/range {a[:3]} != {b[:3]}")
        shape_ok = a[3] == b[3] if a[0] != ENCODED else a[3][0] == len(b[4])
        need(shape_ok, f"sample {key!r}: item shape {a[3]} != {b[3]}")
        need(a[4].tobytes() == b[4].tobytes(), f"sample {key!r}: item payload differs")


def check(d):
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    need(manifest["format"] == FORMAT and manifest["format_version"] == VERSION, "manifest: format")
    samples = []
    for entry in manifest["shards"]:
        samples += check_shard(os.path.join(d, entry["file"]), entry)
    need(manifest["n_samples"] == len(samples), "manifest: n_samples")
    need(manifest["n_tokens"] == sum(len(s[1]) for s in samples), "manifest: n_tokens")
    want = fixture()
    need(len(samples) == len(want), f"{len(samples)} samples, fixture has {len(want)}")
    for got, w in zip(samples, want):
        same_sample(got, w)
    print(f"h5py read {d}: {len(manifest['shards'])} shards, {len(samples)} samples, modalities "
          f"{','.join(manifest['modalities'])}: every rule of FORMAT.md holds and the samples equal the fixture")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    try:
        write(sys.argv[2]) if sys.argv[1] == "write" else check(sys.argv[2])
    except (Bad, KeyError, OSError, ValueError) as err:
        print(f"h5py_shards.py: {type(err).__name__}: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
