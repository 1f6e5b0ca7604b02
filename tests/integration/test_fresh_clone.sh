#!/usr/bin/env bash
# test_fresh_clone.sh - the newcomer's path, end to end: `git clone` this
# repository (only COMMITTED files travel, which is the point) into a temp
# dir, run `make run PORT=<free port>` there in the background (it builds
# from scratch), wait for /ready, ask for one completion and one streamed
# completion with curl, SIGTERM the server and expect make to exit 0.
# Prints TAP-style "ok N - ..." lines.
#
# Skipped (ok 1 # SKIP) when SSMD_SKIP_FRESH_CLONE=1, when this is not a git
# checkout, when git or curl is missing, or when the clone has no
# models/default.  Every wait is bounded (build + ready 8 min, each request
# 60 s, exit 30 s); it always kills what it started and removes the clone.
set -u
cd "$(dirname "$0")/../.."
repo=$(pwd)
. tests/integration/lib.sh   # ok, not_ok, $tmp, free_port, check_*
make_pid=""

skip() { echo "ok $((n + 1)) - # SKIP $*"; exit 0; }

# The ssmd process `make run` started: the one whose binary is the clone's.
server_pid() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        if [ "$exe" = "$tmp/ssmd/build/ssmd" ]; then
            echo "${p#/proc/}"
            return 0
        fi
    done
    return 1
}

cleanup() {
    local sp
    if [ -n "$tmp" ]; then
        sp=$(server_pid) && kill -KILL "$sp" 2>/dev/null
    fi
    if [ -n "$make_pid" ] && kill -0 "$make_pid" 2>/dev/null; then
        kill -TERM "$make_pid" 2>/dev/null
        wait "$make_pid" 2>/dev/null
    fi
    [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT
show_log() { tail -25 "$tmp/make.log" | sed 's/^/# make run: /'; }

[ "${SSMD_SKIP_FRESH_CLONE:-0}" = 1 ] && skip "SSMD_SKIP_FRESH_CLONE=1"
command -v git >/dev/null || skip "git is not installed"
command -v curl >/dev/null || skip "curl is not installed"
git -C "$repo" rev-parse --verify -q HEAD >/dev/null 2>&1 || skip "not a git checkout with a commit"

if git clone -q "$repo" "$tmp/ssmd" 2>"$tmp/clone.log"; then
    ok "git clone $repo ($(git -C "$tmp/ssmd" rev-parse --short HEAD))"
else
    not_ok "git clone $repo failed: $(head -c 300 "$tmp/clone.log")"
    exit 1
fi
if [ ! -f "$tmp/ssmd/models/default/config.json" ]; then
    echo "# the clone has no models/default (not committed yet)"
    skip "no models/default in the committed tree"
fi

free_port || { not_ok "found no free port"; exit 1; }

# A clean make: nothing of the make that runs this test leaks in (its BUILD,
# its jobserver, its MODEL).
jobs=$(nproc 2>/dev/null || echo 2)
(cd "$tmp/ssmd" && exec env -u BUILD -u MODEL -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
    make -j"$jobs" run PORT="$port" </dev/null >"$tmp/make.log" 2>&1) &
make_pid=$!

t0=$(date +%s)
ready=0
why="did not answer /ready with 200 within 8 minutes"
while [ $(($(date +%s) - t0)) -lt 480 ]; do
    if ! kill -0 "$make_pid" 2>/dev/null; then
        wait "$make_pid"
        why="make run exited with status $? before the server was ready"
        make_pid=""
        break
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/ready")
    if [ "$code" = 200 ]; then ready=1; break; fi
    sleep 0.5
done
if [ "$ready" = 1 ]; then
    ok "make run builds and serves models/default: /ready 200 after $(($(date +%s) - t0)) s (port $port)"
else
    not_ok "make run: $why"
    show_log
    exit 1
fi
url="http://127.0.0.1:$port"

check_completion "$url" 60
check_stream "$url" 60

# SIGTERM the server (not make): make then exits with the server's status.
if ! spid=$(server_pid); then
    not_ok "SIGTERM: no process runs $tmp/ssmd/build/ssmd"
    show_log
    exit 1
fi
kill -TERM "$spid"
rc=""
for _ in $(seq 1 300); do # 30 s
    if ! kill -0 "$make_pid" 2>/dev/null; then
        wait "$make_pid"; rc=$?
        make_pid=""
        break
    fi
    sleep 0.1
done
if [ "$rc" = 0 ]; then
    ok "SIGTERM: the server (pid $spid) stops and make run exits with status 0"
elif [ -z "$rc" ]; then
    not_ok "SIGTERM: make run is still running after 30 s"
    show_log
else
    not_ok "SIGTERM: make run exited with status $rc"
    show_log
fi
exit $failed
