#!/usr/bin/env bash
# test_json_schema.sh - response_format json_schema on the default model,
# judged by an independent validator: starts `ssmd serve --model
# models/default` on a free loopback port (always killed) and runs
# json_schema_client.py under $TEST_PYTHON (make test's venv, which has
# jsonschema_rs); skips when no python has it.  Prints TAP lines.
set -u
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/ssmd
. tests/integration/lib.sh

PY=""
for cand in "${TEST_PYTHON:-}" "${PYTHON:-/usr/bin/python3}"; do
    if [ -n "$cand" ] && "$cand" -c 'import jsonschema_rs' 2>/dev/null; then
        PY=$cand
        break
    fi
done
if [ -z "$PY" ]; then
    echo "ok 1 # SKIP python package jsonschema_rs is not installed (make test's venv has it)"
    exit 0
fi
if ! start_server "$BIN" --model models/default --threads 1; then
    echo "not ok 1 - ssmd serve --model models/default: $start_error"
    show_log
    exit 1
fi
timeout 300 "$PY" tests/integration/json_schema_client.py "$url" || { failed=1; show_log 10; }
exit $failed
