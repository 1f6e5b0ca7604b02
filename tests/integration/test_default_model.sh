#!/usr/bin/env bash
# test_default_model.sh - end to end with the model that ships in
# models/default: start `ssmd serve` on a free loopback port, wait for
# /ready, ask for one completion and one streamed completion with curl, then
# SIGTERM and expect a clean exit 0.  Prints TAP-style "ok N - ..." lines.
#
# It never builds anything (make test has built ${BUILD:-build}/ssmd), never
# needs Python, and always kills the server it started.  Runs in ~10 s;
# every wait is bounded (ready 30 s, each request 30 s, exit 20 s).
set -u
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/ssmd
MODEL=models/default
. tests/integration/lib.sh

if [ ! -f "$MODEL/config.json" ] || [ ! -f "$MODEL/model.safetensors" ]; then
    echo "ok 1 - # SKIP no models/default"
    exit 0
fi
if [ ! -x "$BIN" ]; then
    echo "not ok 1 - $BIN is not built (run make first)"
    exit 1
fi
if ! command -v curl >/dev/null; then
    echo "ok 1 - # SKIP curl is not installed"
    exit 0
fi

ready=0
start_server "$BIN" --model "$MODEL" --threads 1 && ready=1
why=$start_error
if [ "$ready" = 1 ]; then
    ok "serve --model $MODEL answers /ready with 200 (port $port)"
else
    not_ok "serve --model $MODEL ${why:-found no free port}"
    show_log
    exit 1
fi
url="http://127.0.0.1:$port"

body='{"prompt":"And God said","max_tokens":24,"temperature":0}'
code=$(curl -s -o "$tmp/completion.json" -w '%{http_code}' --max-time 30 \
    -H 'Content-Type: application/json' -d "$body" "$url/v1/completions")
text=$(grep -o '"text": *"[^"]*' "$tmp/completion.json" | head -1 | sed 's/^"text": *"//')
if [ "$code" = 200 ] && [ -n "$text" ] && grep -q '[A-Za-z]' <<<"$text"; then
    ok "completion: 200 with text \"$text\""
else
    not_ok "completion: status $code, body $(head -c 300 "$tmp/completion.json")"
fi

body='{"prompt":"In the beginning","max_tokens":16,"temperature":0,"stream":true}'
code=$(curl -s -N -o "$tmp/stream.txt" -w '%{http_code}' --max-time 30 \
    -H 'Content-Type: application/json' -d "$body" "$url/v1/completions")
chunks=$(grep -c '^data: {' "$tmp/stream.txt")
last=$(grep -v '^[[:space:]]*$' "$tmp/stream.txt" | tail -1 | tr -d '\r')
stext=$(grep '^data: {' "$tmp/stream.txt" | grep -o '"text": *"[^"]*' | sed 's/^"text": *"//' | tr -d '\n')
if [ "$code" = 200 ] && [ "$chunks" -ge 1 ] && [ "$last" = "data: [DONE]" ] && [ -n "$stext" ]; then
    ok "streamed completion: $chunks chunks ending with data: [DONE], text \"$stext\""
else
    not_ok "streamed completion: status $code, $chunks chunks, last line '$last'"
    head -c 600 "$tmp/stream.txt" | sed 's/^/# stream: /'
fi

kill -TERM "$pid"
rc=""
for _ in $(seq 1 200); do # 20 s
    if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"; rc=$?
        break
    fi
    sleep 0.1
done
if [ "$rc" = 0 ]; then
    ok "SIGTERM: the server exits with status 0"
    pid=""
elif [ -z "$rc" ]; then
    not_ok "SIGTERM: the server is still running after 20 s"
    show_log
else
    not_ok "SIGTERM: the server exited with status $rc"
    pid=""
    show_log
fi
exit $failed
