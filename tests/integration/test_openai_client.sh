#!/usr/bin/env bash
# test_openai_client.sh - ssmd against clients nobody on this team wrote:
# the official `openai` Python package (openai_client.py next to this file:
# completions and chat, streamed and not, errors as the client's exception
# types) and, when installed, Prometheus' `promtool check metrics` on
# /metrics.  Starts `ssmd serve --model tests/fixtures/mamba/text_tiny
# --api-key ...` on a free loopback port and always kills it.  Prints TAP
# "ok N - ..." lines.  The client runs under $TEST_PYTHON (make test's venv,
# ${BUILD}/venv, which has openai) when that can import openai, else under
# $PYTHON (default /usr/bin/python3); skips (ok 1 # SKIP) when neither can.
# Every wait is bounded.
set -u
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/ssmd
MODEL=tests/fixtures/mamba/text_tiny
PY=""
for cand in "${TEST_PYTHON:-}" "${PYTHON:-/usr/bin/python3}"; do
    if [ -n "$cand" ] && "$cand" -c 'import openai' 2>/dev/null; then
        PY=$cand
        break
    fi
done
KEY=ssmd-test-key
. tests/integration/lib.sh

if [ -z "$PY" ]; then
    echo "ok 1 # SKIP python package openai is not installed (make test installs it in \$(BUILD)/venv)"
    exit 0
fi
if [ ! -x "$BIN" ]; then
    echo "not ok 1 - $BIN is not built (run make first)"
    exit 1
fi
if ! command -v curl >/dev/null; then
    echo "ok 1 # SKIP curl is not installed"
    exit 0
fi

ready=0
start_server "$BIN" --model "$MODEL" --threads 1 --api-key "$KEY" && ready=1
if [ "$ready" != 1 ]; then
    echo "not ok 1 - ssmd serve --model $MODEL did not become ready"
    sed 's/^/# server: /' "$tmp/server.log" | tail -20
    exit 1
fi

timeout 120 "$PY" tests/integration/openai_client.py "$url" "$KEY" >"$tmp/py.out" 2>&1 || failed=1
cat "$tmp/py.out"
n=$(grep -cE '^(ok|not ok) ' "$tmp/py.out")
if [ "$n" = 0 ]; then
    n=1
    echo "not ok 1 - openai_client.py printed no results"
fi

n=$((n + 1))
if command -v promtool >/dev/null; then
    curl -s --max-time 10 "$url/metrics" >"$tmp/metrics.txt"
    if promtool check metrics <"$tmp/metrics.txt" >"$tmp/promtool.out" 2>&1; then
        echo "ok $n - promtool check metrics accepts /metrics ($(grep -c '^[a-z]' "$tmp/metrics.txt") samples)"
    else
        echo "not ok $n - promtool check metrics rejects /metrics"
        sed 's/^/# promtool: /' "$tmp/promtool.out" | head -20
        failed=1
    fi
else
    echo "ok $n # SKIP promtool is not installed (Debian package prometheus)"
fi

if ! kill -0 "$pid" 2>/dev/null; then
    echo "not ok $((n + 1)) - the server died during the client tests"
    sed 's/^/# server: /' "$tmp/server.log" | tail -20
    failed=1
fi
exit $failed
