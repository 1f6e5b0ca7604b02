# lib.sh - what the shell integration tests share: TAP output, a temp dir
# removed at exit, and one ssmd server on a free loopback port that is
# always killed.  Source it after `cd` to the repository root:
#
#   . tests/integration/lib.sh
#   start_server "$BIN" --model DIR --threads 1 || exit 1   # sets pid, port, url
#
# Every wait is bounded (ready within 30 s, three port attempts).

n=0
failed=0
pid=""
tmp=$(mktemp -d /tmp/ssmd-itest-XXXXXX)

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; failed=1; }
show_log() { sed 's/^/# server: /' "$tmp/server.log" | tail -"${1:-20}"; }

lib_cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap lib_cleanup EXIT

port_in_use() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# start_server BIN ARGS...: `BIN serve --host 127.0.0.1 --port P ARGS...`
# on a random free port (a bind race with another process is retried), its
# stderr in $tmp/server.log.  Returns 0 once /ready answers 200, else 1 with
# the reason in $start_error and nothing left running.
start_server() {
    local bin=$1 code attempt
    shift
    start_error="found no free port"
    for attempt in 1 2 3; do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$port" && continue
        "$bin" serve --host 127.0.0.1 --port "$port" "$@" >"$tmp/server.log" 2>&1 &
        pid=$!
        for _ in $(seq 1 300); do # 30 s
            kill -0 "$pid" 2>/dev/null || break
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/ready")
            if [ "$code" = 200 ]; then
                url="http://127.0.0.1:$port"
                return 0
            fi
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            start_error="did not answer /ready with 200 within 30 s"
            kill -KILL "$pid" 2>/dev/null
        else
            start_error="exited before it was ready"
        fi
        wait "$pid" 2>/dev/null
        pid=""
    done
    return 1
}
