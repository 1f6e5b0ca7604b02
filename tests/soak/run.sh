#!/usr/bin/env bash
# tests/soak/run.sh - `make soak`: builds the soak driver (bench/soak.c) and
# runs it against the release server on the default model for SOAK_SECONDS
# (default 1800) of mixed traffic; exits non-zero when RSS grew, slots
# leaked, a 5xx appeared or the server did not exit 0 (see bench/soak.c).
#
# Environment: BUILD (default build), SOAK_SECONDS, SOAK_CLIENTS (6),
# SOAK_MAX_SESSIONS (6), SOAK_MODEL (models/default), SOAK_STORE=1 (the
# server also keeps its sessions in a redis-server this script starts on a
# free loopback port and stops).  Never needs Python.
set -euo pipefail
BUILD=${BUILD:-build}
SOAK_SECONDS=${SOAK_SECONDS:-1800}
cd "$(dirname "$0")/../.."
make --no-print-directory BUILD="$BUILD" "$BUILD/ssmd" "$BUILD/rel/bench/soak" >&2
store=()
if [ "${SOAK_STORE:-0}" = 1 ]; then
    rdir=$(mktemp -d /tmp/ssmd-soak-redis-XXXXXX)
    for _ in 1 2 3 4 5; do
        rport=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        (: </dev/tcp/127.0.0.1/"$rport") 2>/dev/null || break
    done
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$rdir" >"$rdir/log" 2>&1 &
    rpid=$!
    trap 'kill $rpid 2>/dev/null; wait $rpid 2>/dev/null; rm -rf "$rdir"' EXIT
    for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    store=(--session-store "redis://127.0.0.1:$rport")
    echo "soak: session store redis://127.0.0.1:$rport" >&2
fi
"$BUILD/rel/bench/soak" --server "$BUILD/ssmd" --model "${SOAK_MODEL:-models/default}" \
    --seconds "$SOAK_SECONDS" --clients "${SOAK_CLIENTS:-6}" --max-sessions "${SOAK_MAX_SESSIONS:-6}" "${store[@]}"
