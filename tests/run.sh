#!/usr/bin/env bash
# run.sh - runs every unit-test binary given as arguments, then every
# integration test script tests/integration/test_*.sh, and prints a final
# "N passed, N failed" line counted over individual test cases.
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0; failed=0; broken=()
for bin in "$@"; do
    out=$("$bin" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks|:[EF]:' | sed "s|^|$(basename "$bin"): |"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks' | tail -1)
    if [ -n "$line" ]; then
        n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/' <<<"$line")
        f=$((f)); passed=$((passed + n - f)); failed=$((failed + f))
    fi
    if [ $rc -ne 0 ] && [ -z "$line" -o "${f:-0}" = 0 ]; then
        printf '%s\n' "$out" | tail -30
        failed=$((failed + 1)); broken+=("$bin")
    fi
    [ $rc -ne 0 ] && broken+=("$bin")
done
for script in tests/integration/test_*.sh; do
    [ -e "$script" ] || continue
    out=$(bash "$script" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^(ok|not ok)' | sed "s|^|$(basename "$script"): |"
    n_ok=$(grep -c '^ok' <<<"$out"); n_bad=$(grep -c '^not ok' <<<"$out")
    passed=$((passed + n_ok)); failed=$((failed + n_bad))
    if [ $rc -ne 0 ]; then
        [ "$n_bad" = 0 ] && failed=$((failed + 1)) && printf '%s\n' "$out" | tail -30
        broken+=("$script")
    fi
done
echo "${passed} passed, ${failed} failed"
[ ${#broken[@]} -eq 0 ] && [ "$failed" = 0 ]
