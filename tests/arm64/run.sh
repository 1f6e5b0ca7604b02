#!/usr/bin/env bash
# run.sh - `make test-arm64`: runs the aarch64 unit-test binaries given as
# arguments under qemu-user (a correctness check of the NEON kernels and of
# the code's portability, not of speed), prints each suite's Check summary
# and a final "N passed, N failed"; exits non-zero on any failure.
set -u
cd "$(dirname "$0")/../.."
# LeakSanitizer cannot stop the world under qemu-user; leaks are the x86
# ASan run's job (same code).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Emulated threads are slow: give each Check test case more time.
export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-4}
QEMU=${QEMU:-qemu-aarch64}
passed=0; failed=0
for bin in "$@"; do
    out=$("$QEMU" "$bin" 2>&1); rc=$?
    printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks|:[EF]:' | sed "s|^|arm64 $(basename "$bin"): |"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks' | tail -1)
    if [ -z "$line" ]; then
        printf '%s\n' "$out" | tail -20
        failed=$((failed + 1))
        continue
    fi
    n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
    f=$(sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/' <<<"$line")
    f=$((f)); passed=$((passed + n - f)); failed=$((failed + f))
    [ $rc -ne 0 ] && [ "$f" = 0 ] && failed=$((failed + 1))
done
echo "arm64: ${passed} passed, ${failed} failed"
[ "$failed" = 0 ]
