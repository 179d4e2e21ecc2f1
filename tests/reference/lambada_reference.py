#!/usr/bin/python3
"""lambada_reference.py — independent float64 reference of the LAMBADA evaluation (experiments/eval.h,
EVAL_LAMBADA) on the real tiny RWKV-7 (tests/data/tiny-rwkv7-834K-fp32.pth, byte-level), and the generator
of tests/reference/vectors/lambada-tiny.json, which tests/test_eval_lambada.c compares with.

Contract:
  * The model is rwkv7_reference.forward (float64, written from /work/shared/reference/rwkv7.md, validated
    there against rwkv.cpp's expected logits); the evaluation is RWKV's LAMBADA definition written here
    from its description: for each of the first N passages of tests/data/lambada_test.jsonl, split the text
    at its last space (context = text before it, target = " " + last word), feed token 0 + bytes(context) +
    bytes(target) in one pass, and at every target position take log softmax and the first argmax. The
    passage is correct when every argmax is the target byte; its NLL is minus the summed log-probabilities.
  * Writes {"model", "data", "passages", "items": [{"line", "target", "nll", "argmax", "correct",
    "top2_gap"}]} (top2_gap: the smallest gap between the two largest logits over the target positions, so
    the C test knows an argmax is unambiguous in float32). Deterministic (no randomness, float64).
  * `--check` recomputes and compares with the committed file (NLL within 1e-9 relative, everything else
    equal); exit status 0 means they agree. Runs in about a minute (the WKV recurrence is a Python loop).
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rwkv7_reference as ref  # noqa: E402

torch.set_default_dtype(torch.float64)

ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "tests", "data", "lambada_test.jsonl")
OUT = os.path.join(HERE, "vectors", "lambada-tiny.json")
PASSAGES = 8


def passage_items(p, n):
    items = []
    with open(DATA, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if len(items) == n:
                break
            text = json.loads(line)["text"]
            context, word = text.rsplit(" ", 1)
            src = [0] + list(context.encode("utf-8"))
            dst = list((" " + word).encode("utf-8"))
            with torch.no_grad():
                logits = ref.forward(p, torch.tensor([src + dst]))[0]
            nll, argmax, gap = 0.0, [], float("inf")
            for j, want in enumerate(dst):
                z = logits[len(src) - 1 + j]
                nll -= torch.log_softmax(z, dim=-1)[want].item()
                argmax.append(int(ref.first_argmax(z[None])[0]))
                top = torch.topk(z, 2).values
                gap = min(gap, (top[0] - top[1]).item())
            items.append({"line": line_no, "target": " " + word, "nll": nll, "argmax": argmax,
                          "correct": argmax == dst, "top2_gap": gap})
            print("line %d: target %r, nll %.6f, correct %s, top-2 gap %.2e" % (line_no, " " + word, nll,
                                                                                 argmax == dst, gap))
    return items


def build():
    sd = torch.load(ref.TINY_MODEL, map_location="cpu")
    p = {name: t.to(torch.float64) for name, t in sd.items()}
    return {"model": "tests/data/tiny-rwkv7-834K-fp32.pth", "data": "tests/data/lambada_test.jsonl",
            "passages": PASSAGES, "items": passage_items(p, PASSAGES)}


def check(fresh):
    with open(OUT) as f:
        old = json.load(f)
    ok = old["passages"] == fresh["passages"] and len(old["items"]) == len(fresh["items"])
    for a, b in zip(old["items"], fresh["items"]):
        same = (a["line"], a["target"], a["argmax"], a["correct"]) == (b["line"], b["target"], b["argmax"], b["correct"])
        close = abs(a["nll"] - b["nll"]) <= 1e-9 * abs(b["nll"])
        ok &= same and close
        print("line %d: %s" % (b["line"], "agrees" if same and close else "DIFFERS"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="recompute and compare with the committed file")
    args = ap.parse_args()
    fresh = build()
    if args.check:
        ok = check(fresh)
        print("lambada reference: %s" % ("agrees" if ok else "DIFFERS"))
        return 0 if ok else 1
    with open(OUT, "w") as f:
        json.dump(fresh, f, indent=1)
        f.write("\n")
    print("wrote %s" % OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
