#!/usr/bin/python3
"""check_pth_with_torch.py FILE.pth REFERENCE.pth — does PyTorch read FILE as REFERENCE's state_dict?

Loads both with torch.load(map_location="cpu"), and FILE a second time with weights_only=True (the
restricted unpickler), and checks that FILE is a dict / OrderedDict with exactly REFERENCE's names in
the same order and, per tensor, the same shape, dtype and bitwise-equal values. Prints a summary and
exits 1 on any mismatch (2 on usage errors). Needs /usr/bin/python3 with torch (Debian python3-torch).
"""
import collections
import sys

import torch


def load(path, weights_only):
    if weights_only:
        return torch.load(path, map_location="cpu", weights_only=True)
    return torch.load(path, map_location="cpu")


def bitwise_equal(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    a = a.contiguous().reshape(-1)
    b = b.contiguous().reshape(-1)
    if a.dtype.is_floating_point:  # compare bit patterns (NaNs, -0.0) through an integer view
        view = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.view(view), b.view(view))
    return torch.equal(a, b)


def compare(label, got, ref):
    problems = []
    if not isinstance(got, dict):
        return [f"{label}: loaded object is a {type(got).__name__}, not a dict/OrderedDict"]
    if list(got.keys()) != list(ref.keys()):
        missing = [k for k in ref if k not in got]
        extra = [k for k in got if k not in ref]
        problems.append(f"{label}: names differ (missing {missing[:5]}, extra {extra[:5]}, or order differs)")
    for name, want in ref.items():
        have = got.get(name)
        if have is None:
            continue
        if not isinstance(have, torch.Tensor):
            problems.append(f"{label}: {name} is a {type(have).__name__}, not a tensor")
        elif have.dtype != want.dtype or tuple(have.shape) != tuple(want.shape):
            problems.append(f"{label}: {name} is {have.dtype} {tuple(have.shape)}, want {want.dtype} {tuple(want.shape)}")
        elif not bitwise_equal(have, want):
            problems.append(f"{label}: {name} values differ")
    return problems


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    path, ref_path = argv[1], argv[2]
    ref = load(ref_path, weights_only=False)
    problems = []
    for weights_only in (False, True):
        label = f"torch.load(weights_only={weights_only})"
        try:
            got = load(path, weights_only)
        except Exception as exc:  # report any loader failure as a mismatch
            problems.append(f"{label}: failed: {type(exc).__name__}: {exc}")
            continue
        kind = "OrderedDict" if isinstance(got, collections.OrderedDict) else type(got).__name__
        nbytes = sum(t.numel() * t.element_size() for t in got.values()) if isinstance(got, dict) else 0
        dtypes = sorted({str(t.dtype) for t in got.values()}) if isinstance(got, dict) else []
        print(f"{label}: {path}: {kind} with {len(got) if isinstance(got, dict) else 0} tensors, "
              f"{nbytes} bytes, dtypes {dtypes}")
        problems += compare(label, got, ref)
    print(f"torch {torch.__version__}; reference {ref_path}: {len(ref)} tensors")
    for p in problems[:20]:
        print("MISMATCH", p)
    print("FAIL" if problems else "PASS: same names, order, shapes, dtypes and bits")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
