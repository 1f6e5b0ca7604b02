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

check_completion "$url" 30
check_stream "$url" 30

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
