#!/usr/bin/env python3
"""compare_runs.py REF_DIR RUN_DIR [FIRST_STEP [LAST_STEP]] — the training-equivalence check of the multi-rank
tests (tests/mpi/train_*_check.sh): the loss of every step FIRST..LAST in RUN_DIR/metrics.jsonl equals REF_DIR's
to within 1e-5 relative, and the weights of the checkpoint of step LAST agree to within 1e-5 of the model's
largest weight. Prints the measured differences; exit status 0 when both hold."""
import json
import struct
import sys

import numpy as np

TOL = 1e-5


def losses(run_dir, first, last):
    rows = (json.loads(line) for line in open(run_dir + "/metrics.jsonl"))
    return {r["step"]: r["loss"] for r in rows if "loss" in r and first <= r["step"] <= last}


def weights(run_dir, step):
    raw = open("%s/checkpoints/step-%08d.safetensors" % (run_dir, step), "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for name, v in head.items():
        if name == "__metadata__" or name.startswith("optimizer."):
            continue
        a, b = v["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4")
    return out


def main():
    ref, got = sys.argv[1], sys.argv[2]
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    last = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    la, lb = losses(ref, first, last), losses(got, first, last)
    same_steps = la.keys() == lb.keys() and len(lb) == last - first + 1
    rel = max(abs(la[s] - lb[s]) / abs(la[s]) for s in la) if same_steps else float("inf")
    wa, wb = weights(ref, last), weights(got, last)
    same_names = wa.keys() == wb.keys()
    # weights: the largest difference of any entry relative to the model's largest weight (summation order
    # differs between layouts in the last bits; Adam with a tiny eps turns that into tiny steps on near-zero
    # gradients, so tensors that start at zero show it most in a per-tensor relative measure, printed too)
    scale = max(float(np.max(np.abs(w))) for w in wa.values())
    wmax = max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa) if same_names else float("inf")
    wl2 = max(float(np.linalg.norm(wa[k] - wb[k]) / max(np.linalg.norm(wa[k]), 1e-30)) for k in wa) \
        if same_names else float("inf")
    wrel = wmax / scale
    print("%s vs %s: %d steps, max relative loss difference %.2e, max weight difference %.2e of the largest weight "
          "(tol %g; worst per-tensor relative L2 %.1e)"
          % (got.rstrip("/").split("/")[-1], ref.rstrip("/").split("/")[-1], len(lb), rel, wrel, TOL, wl2))
    sys.exit(0 if same_steps and rel <= TOL and wrel <= TOL else 1)


if __name__ == "__main__":
    main()
