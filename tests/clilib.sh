# clilib.sh — helpers for the end-to-end CLI tests (sourced). Each check prints PASS/FAIL with what it
# measured; `finish` ends the script with "N passed, N failed" and a non-zero status on any failure.
set -u
MODRWKV=$1
SRC=$2
PY=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/modrwkv-cli.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0

pass() { echo "PASS: $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $1"; FAILED=$((FAILED + 1)); }
check() { # check NAME COMMAND...: passes when the command exits 0
    local name=$1; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

# expect_error NAME EXPECTED_SUBSTRING COMMAND...: the command must exit with status 1 (not a crash),
# print exactly one line on stderr, starting "modrwkv: error:" and containing the substring.
expect_error() {
    local name=$1 want=$2; shift 2
    local rc=0
    "$@" > "$WORK/out.txt" 2> "$WORK/err.txt" || rc=$?
    local lines
    lines=$(wc -l < "$WORK/err.txt")
    local msg
    msg=$(cat "$WORK/err.txt")
    if [ "$rc" = 1 ] && [ "$lines" = 1 ] && [[ "$msg" == "modrwkv: error: "* ]] && [[ "$msg" == *"$want"* ]]; then
        pass "$name: exit 1, one line: $msg"
    else
        fail "$name: exit $rc, $lines stderr lines, expected one line containing '$want': $msg"
    fi
}

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}
