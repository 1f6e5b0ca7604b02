#!/usr/bin/env bash
# tests/soak/run.sh - `make soak`: builds the soak driver (bench/soak.c) and
# runs it against the release server on the default model for SOAK_SECONDS
# (default 1800) of mixed traffic; exits non-zero when RSS grew, slots
# leaked, a 5xx appeared or the server did not exit 0 (see bench/soak.c).
#
# Environment: BUILD (default build), SOAK_SECONDS, SOAK_CLIENTS (6),
# SOAK_MAX_SESSIONS (6), SOAK_MODEL (models/default).  Never needs Python.
set -euo pipefail
BUILD=${BUILD:-build}
SOAK_SECONDS=${SOAK_SECONDS:-1800}
cd "$(dirname "$0")/../.."
make --no-print-directory BUILD="$BUILD" "$BUILD/ssmd" "$BUILD/rel/bench/soak" >&2
exec "$BUILD/rel/bench/soak" --server "$BUILD/ssmd" --model "${SOAK_MODEL:-models/default}" \
    --seconds "$SOAK_SECONDS" --clients "${SOAK_CLIENTS:-6}" --max-sessions "${SOAK_MAX_SESSIONS:-6}"
