#!/usr/bin/env bash
# test_quantize_cli.sh - `ssmd quantize` end to end: the default model
# (models/default, safetensors) written as Q8_0, Q4_K, BF16 and F16 GGUF
# files; `ssmd generate` from the Q8_0, BF16 and F16 files gives the same
# greedy text as the bf16 model; `ssmd serve --model file.gguf` answers a completion; bad
# arguments and inputs fail with a message naming them.  TAP output.
#
# Never builds anything, never needs Python; ~10 s.
set -u
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/ssmd
MODEL=models/default
. tests/integration/lib.sh

if [ ! -f "$MODEL/model.safetensors" ]; then
    echo "ok 1 - # SKIP no models/default"
    exit 0
fi
if [ ! -x "$BIN" ]; then
    echo "not ok 1 - $BIN is not built (run make first)"
    exit 1
fi

for t in q8_0 q4_k bf16 f16; do
    if "$BIN" quantize "$MODEL" "$tmp/$t.gguf" --type $t 2>"$tmp/q.log" && [ -s "$tmp/$t.gguf" ]; then
        ok "quantize --type $t: $(cat "$tmp/q.log")"
    else
        not_ok "quantize --type $t failed: $(cat "$tmp/q.log")"
    fi
done
bf16_bytes=$(stat -c %s "$MODEL/model.safetensors")
q8_bytes=$(stat -c %s "$tmp/q8_0.gguf" 2>/dev/null || echo 0)
if [ "$q8_bytes" -gt 0 ] && [ "$q8_bytes" -lt $((bf16_bytes * 2 / 3)) ]; then
    ok "the q8_0 file ($q8_bytes bytes) is well under the bf16 weights ($bf16_bytes bytes)"
else
    not_ok "the q8_0 file is $q8_bytes bytes, the bf16 weights $bf16_bytes"
fi

gen() { "$BIN" generate --model "$1" --prompt "And God said" --temperature 0 --max-tokens 24 \
    --threads 1 2>>"$tmp/gen.log"; }
want=$(gen "$MODEL")
for t in q8_0 bf16 f16; do
    got=$(gen "$tmp/$t.gguf")
    if [ -n "$want" ] && [ "$got" = "$want" ]; then
        ok "generate from the $t file: the bf16 model's greedy text"
    else
        not_ok "generate from the $t file: \"$got\", bf16: \"$want\" ($(tail -2 "$tmp/gen.log"))"
    fi
done

if start_server "$BIN" --model "$tmp/q8_0.gguf" --threads 1; then
    check_completion "$url" 30
    kill -TERM "$pid"; wait "$pid" 2>/dev/null; pid=""
else
    not_ok "serve --model q8_0.gguf: $start_error"
    show_log
fi

"$BIN" quantize "$MODEL" "$tmp/x.gguf" --type q5_k >/dev/null 2>"$tmp/e.log"; rc=$?
if [ $rc = 2 ] && grep -q "unknown --type 'q5_k'" "$tmp/e.log"; then
    ok "an unknown --type is refused by name (exit 2)"
else
    not_ok "--type q5_k: exit $rc, $(cat "$tmp/e.log")"
fi
"$BIN" quantize "$tmp/nowhere" "$tmp/x.gguf" >/dev/null 2>"$tmp/e.log"; rc=$?
if [ $rc = 1 ] && grep -q "nowhere" "$tmp/e.log" && [ ! -e "$tmp/x.gguf" ]; then
    ok "a missing input is refused naming it (exit 1): $(cat "$tmp/e.log")"
else
    not_ok "missing input: exit $rc, $(cat "$tmp/e.log")"
fi
exit $failed
