#!/usr/bin/env bash
# `mpirun -np 2 modrwkv eval` (experiments/eval.h, data parallel) against one process, on the real tiny RWKV-7:
# - lambada on the first 30 LAMBADA passages (batches of 4: 8 batches over 2 ranks) and perplexity on the
#   byte-level demo text (5 samples, batches of 2): eval.json of 2 ranks equals the one-process eval.json in
#   every field but the timing and the rank count ("ranks": 2), and the per-item files are identical;
# - rank 0 alone prints the summary line;
# - an error (a missing data file) under 2 ranks exits non-zero with one "modrwkv: error:" line.
# Usage: eval_cli_dp.sh MODRWKV SRC MPIEXEC [MPIEXEC FLAGS...]
source "$(dirname "$0")/../clilib.sh"
MPIEXEC=$3
shift 3
MPI=("$MPIEXEC" "$@" -np 2)
TINY=$SRC/tests/data/tiny-rwkv7-834K-fp32.pth
cd "$WORK"
"$MODRWKV" data demo --out "$WORK/demo" --tokenizer bytes > /dev/null

same_report() { # same_report ONE.json ALL.json ONE.jsonl ALL.jsonl
    $PY - "$@" <<'PYEOF'
import json, sys
one, all_ = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ranks = (one.pop("ranks"), all_.pop("ranks"))
one.pop("seconds"), all_.pop("seconds")
items_same = open(sys.argv[3]).read() == open(sys.argv[4]).read()
print("%s: value %r / %r, n %d / %d, ci %r / %r, ranks %r, items identical: %s"
      % (one["metric"], one["value"], all_["value"], one["n"], all_["n"], one["ci95"], all_["ci95"], ranks, items_same))
sys.exit(0 if one == all_ and ranks == (1, 2) and items_same else 1)
PYEOF
}
run_both() { # run_both NAME ARGS...: one process, then 2 ranks
    local name=$1; shift
    "$MODRWKV" eval --ckpt "$TINY" "$@" --threads 1 --out "$WORK/$name-1.json" --items "$WORK/$name-1.jsonl" \
        > "$WORK/$name-1.txt" 2>&1
    "${MPI[@]}" "$MODRWKV" eval --ckpt "$TINY" "$@" --out "$WORK/$name-2.json" --items "$WORK/$name-2.jsonl" \
        > "$WORK/$name-2.txt" 2>&1
}
run_both lambada --data "$SRC/tests/data/lambada_test.jsonl" --metric lambada --max-samples 30 --batch-size 4
echo "1 rank:  $(head -n 1 "$WORK/lambada-1.txt")"
echo "2 ranks: $(head -n 1 "$WORK/lambada-2.txt")"
check "lambada: eval.json and items of 2 ranks = 1 process" \
    same_report "$WORK/lambada-1.json" "$WORK/lambada-2.json" "$WORK/lambada-1.jsonl" "$WORK/lambada-2.jsonl"
check "lambada: one summary line (rank 0 only)" test "$(grep -c 'LAMBADA accuracy' "$WORK/lambada-2.txt")" = 1
run_both text --data "$WORK/demo/text/test" --metric perplexity --max-samples 5 --batch-size 2
echo "2 ranks: $(head -n 1 "$WORK/text-2.txt")"
check "perplexity: eval.json and items of 2 ranks = 1 process" \
    same_report "$WORK/text-1.json" "$WORK/text-2.json" "$WORK/text-1.jsonl" "$WORK/text-2.jsonl"
rc=0
"${MPI[@]}" "$MODRWKV" eval --ckpt "$TINY" --data "$WORK/none.jsonl" --metric lambada > "$WORK/err-out.txt" \
    2> "$WORK/err.txt" || rc=$?
echo "error under 2 ranks: exit $rc, $(grep -c 'modrwkv: error:' "$WORK/err.txt") error line(s): $(grep 'modrwkv: error:' "$WORK/err.txt")"
check "an error under 2 ranks: non-zero exit, one error line naming the file" \
    test "$rc" != 0 -a "$(grep -c "modrwkv: error: .*none.jsonl" "$WORK/err.txt")" = 1
finish
