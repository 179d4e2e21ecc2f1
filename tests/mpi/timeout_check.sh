#!/usr/bin/env bash
# timeout_check.sh — specification of failure handling in sharding/ (issue 5, "Failure handling"):
# a rank that hangs or dies makes the whole MPI job exit non-zero within a bounded time, with a message
# that names the rank.
#   1. rank 1 sleeps past a 2 s collective timeout: mpirun exits non-zero within 10 s, the ranks that
#      arrived print "rank R: collective all_reduce timed out after 2 s waiting for rank 1 ...", and no
#      rank reports that the collective completed (mpirun returns only once every rank has exited).
#   2. rank 1 dies by SIGKILL before a collective: mpirun exits non-zero within 10 s naming rank 1.
# usage: timeout_check.sh MPIEXEC DP_CHECK [launcher options...]
set -u
mpiexec=$1
prog=$2
shift 2
failures=0

# run NAME NP REGEX ARGS...: runs `MPIEXEC [launcher options] -np NP DP_CHECK ARGS`, then checks its
# exit status, its duration and that its output has a line matching REGEX.
launcher=("$@")
run() {
    local name=$1 np=$2 regex=$3
    shift 3
    local start end out rc elapsed
    start=$(date +%s%N)
    out=$("$mpiexec" "${launcher[@]}" -np "$np" "$prog" "$@" 2>&1 </dev/null)
    rc=$?
    end=$(date +%s%N)
    elapsed=$(( (end - start) / 1000000 ))
    echo "---- $name: mpirun exit status $rc after ${elapsed} ms; output:"
    echo "$out" | grep -v '^\s*$' | head -20
    local ok=1 why=""
    if [ "$rc" -eq 0 ]; then ok=0; why="$why exit status 0;"; fi
    if [ "$elapsed" -gt 10000 ]; then ok=0; why="$why took ${elapsed} ms > 10000 ms;"; fi
    if ! echo "$out" | grep -Eq "$regex"; then ok=0; why="$why no line matching /$regex/;"; fi
    if echo "$out" | grep -q "collective completed"; then ok=0; why="$why a rank completed the collective;"; fi
    if [ $ok -eq 1 ]; then
        echo "$name: exit status $rc (non-zero), ${elapsed} ms (limit 10000), message found: PASS"
    else
        echo "$name: FAIL ($why)"
        failures=$((failures + 1))
    fi
}

run "hung rank 1 (2 s timeout)" 3 \
    "rank [02]: collective all_reduce timed out after 2 s waiting for rank 1 \(a peer rank died or hangs\); the last complete checkpoint is intact, resume with --resume auto" \
    --scenario timeout --timeout 2
run "killed rank 1" 3 "rank 1.*(signal 9|Killed|killed)" --scenario kill --timeout 60

if [ $failures -eq 0 ]; then echo "timeout_check: all checks passed"; else echo "timeout_check: $failures checks failed"; fi
exit $failures
