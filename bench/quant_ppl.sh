#!/usr/bin/env bash
# quant_ppl.sh - what quantisation costs the default model: held-out KJV
# perplexity (models/train's validation split: every 50th chapter) at the
# shipped bf16, f32, Q8_0, Q4_K and Q4_0, through prefill and through
# decode, plus each file's size.  One line of JSON per run, then a table.
#
#   bash bench/quant_ppl.sh [MODEL_DIR] [THREADS]
#
# Needs Debian's bible-kjv (models/train/prepare_corpus.py writes the split
# under $TMP) and builds build/ssmd and build/rel/bench/bench_ppl.  Writes
# only under a temporary directory, removed at exit.  ~1 minute on 2 cores.
set -eu
cd "$(dirname "$0")/.."
MODEL=${1:-models/default}
THREADS=${2:-2}
tmp=$(mktemp -d /tmp/ssmd-ppl-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
make -s build/ssmd build/rel/bench/bench_ppl
/usr/bin/python3 models/train/prepare_corpus.py --out "$tmp/kjv" >&2
files=("$MODEL")
for t in f32 q8_0 q4_k q4_0; do
    build/ssmd quantize "$MODEL" "$tmp/$t.gguf" --type "$t" >&2
    files+=("$tmp/$t.gguf")
done
printf '%-6s %10s %14s %14s\n' dtype MB "ppl prefill" "ppl decode"
for f in "${files[@]}"; do
    p=$(build/rel/bench/bench_ppl "$f" "$tmp/kjv/val.txt" --threads "$THREADS")
    d=$(build/rel/bench/bench_ppl "$f" "$tmp/kjv/val.txt" --threads "$THREADS" --decode 1)
    echo "$p" >&2; echo "$d" >&2
    size=$(du -bc "$f" | tail -1 | cut -f1) # a directory: its files
    dtype=$(sed -E 's/.*"dtype": "([^"]*)".*/\1/' <<<"$p")
    ppl() { sed -E 's/.*"ppl_per_token": ([0-9.]*).*/\1/' <<<"$1"; }
    printf '%-6s %10.1f %14s %14s\n' "$dtype" "$(bc -l <<<"$size / 1000000")" "$(ppl "$p")" "$(ppl "$d")"
done
