#!/usr/bin/env bash
# run.sh - runs each ThreadSanitizer test binary given as arguments (make
# tsan sets TSAN_OPTIONS with halt_on_error=1), prints Check's summary lines
# prefixed "tsan/<name>:" like tests/run.sh, shows the TSan report of a
# failing binary, and ends with "tsan: N passed, N failed".  Exits non-zero
# on any failure or any ThreadSanitizer report.
set -u
cd "$(dirname "$0")/../.."
# Without address-space randomization where setarch allows it: GCC 12's TSan
# stops with "unexpected memory mapping" on kernels with vm.mmap_rnd_bits
# above 28 (the servers the tests start inherit it).
norand=()
setarch "$(uname -m)" -R true 2>/dev/null && norand=(setarch "$(uname -m)" -R)
passed=0; failed=0; broken=()
for bin in "$@"; do
    t0=$SECONDS
    out=$("${norand[@]}" "$bin" 2>&1); rc=$?
    name="tsan/$(basename "$bin")"
    printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks|:[EF]:' | sed "s|^|$name: |"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+%: Checks' | tail -1)
    f=0
    if [ -n "$line" ]; then
        n=$(sed -E 's/.*Checks: ([0-9]+).*/\1/' <<<"$line")
        f=$(sed -E 's/.*Failures: ([0-9]+), Errors: ([0-9]+).*/\1+\2/' <<<"$line")
        f=$((f)); passed=$((passed + n - f)); failed=$((failed + f))
    fi
    reports=$(grep -c 'WARNING: ThreadSanitizer' <<<"$out")
    if [ $rc -ne 0 ] || [ "$reports" != 0 ]; then
        # the first report in full (halt_on_error stops at it), else the tail
        if [ "$reports" != 0 ]; then
            printf '%s\n' "$out" | sed -n '/^==================$/,/^==================$/p' | head -80
        else
            printf '%s\n' "$out" | tail -30
        fi
        [ "$f" = 0 ] && failed=$((failed + 1))
        broken+=("$bin")
    fi
    echo "$name: $((SECONDS - t0)) s, exit $rc, $reports ThreadSanitizer report(s)"
done
echo "tsan: ${passed} passed, ${failed} failed"
[ ${#broken[@]} -eq 0 ] && [ "$failed" = 0 ]
