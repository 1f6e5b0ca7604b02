#!/usr/bin/env bash
# run.sh - runs each libFuzzer target given as an argument for SECONDS
# seconds (first argument): it first replays the committed seed corpus
# tests/fuzz/corpus/<name>/ and the regression inputs
# tests/fuzz/regress/<name>/ (inputs that once crashed: each must pass now),
# then mutates (with tests/fuzz/dict/<name>.dict when there is one).  New
# inputs go to $FUZZ_WORK/<name>/corpus (never into the committed corpus),
# crashes to $FUZZ_WORK/<name>/crash-*.  Prints one line
# per target (runs, coverage, exec/s) and fails if any target failed.
set -u
cd "$(dirname "$0")/../.."
secs=$1; shift
work=${FUZZ_WORK:-/tmp/ssmd-fuzz}
export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for bin in "$@"; do
    name=$(basename "$bin"); short=${name#fuzz_}
    dir=$work/$name; mkdir -p "$dir/corpus"
    dirs=("$dir/corpus")
    for d in tests/fuzz/corpus/$short tests/fuzz/regress/$short; do
        [ -d "$d" ] && dirs+=("$d")
    done
    log=$dir/log
    dict=(); [ -f tests/fuzz/dict/$short.dict ] && dict=(-dict=tests/fuzz/dict/$short.dict)
    "$bin" -max_total_time="$secs" -timeout=${FUZZ_TIMEOUT:-20} -rss_limit_mb=${FUZZ_RSS_MB:-2560} \
        -print_final_stats=1 -artifact_prefix="$dir/" "${dict[@]}" ${FUZZ_ARGS:-} "${dirs[@]}" >"$log" 2>&1
    rc=$?
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$')
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
    eps=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$')
    if [ $rc -eq 0 ]; then
        echo "ok $name: ${runs:-?} runs in ${secs}s, ${cov:-cov: ?}, ${eps:-?} exec/s"
    else
        echo "not ok $name: exit $rc (log $log; crash input under $dir/)"
        grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "$log" | head -25
        failed=$((failed + 1))
    fi
done
[ $failed -eq 0 ]
