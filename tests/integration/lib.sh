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

# free_port: sets port to a random free loopback port (returns 1 if five
# tries found none).
free_port() {
    local p
    for _ in 1 2 3 4 5; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_in_use "$p" || { port=$p; return 0; }
    done
    return 1
}

# check_completion URL MAX_TIME and check_stream URL MAX_TIME: one greedy
# completion, then one streamed, from the default model; each must answer
# 200 with text that has letters (the stream: SSE chunks ending with
# data: [DONE]).  One TAP line each.
check_completion() {
    local code text body='{"prompt":"And God said","max_tokens":24,"temperature":0}'
    code=$(curl -s -o "$tmp/completion.json" -w '%{http_code}' --max-time "$2" \
        -H 'Content-Type: application/json' -d "$body" "$1/v1/completions")
    text=$(grep -o '"text": *"[^"]*' "$tmp/completion.json" | head -1 | sed 's/^"text": *"//')
    if [ "$code" = 200 ] && grep -q '[A-Za-z]' <<<"$text"; then
        ok "completion: 200 with text \"$text\""
    else
        not_ok "completion: status $code, body $(head -c 300 "$tmp/completion.json")"
    fi
}

check_stream() {
    local code chunks last stext body='{"prompt":"In the beginning","max_tokens":16,"temperature":0,"stream":true}'
    code=$(curl -s -N -o "$tmp/stream.txt" -w '%{http_code}' --max-time "$2" \
        -H 'Content-Type: application/json' -d "$body" "$1/v1/completions")
    chunks=$(grep -c '^data: {' "$tmp/stream.txt")
    last=$(grep -v '^[[:space:]]*$' "$tmp/stream.txt" | tail -1 | tr -d '\r')
    stext=$(grep '^data: {' "$tmp/stream.txt" | grep -o '"text": *"[^"]*' | sed 's/^"text": *"//' | tr -d '\n')
    if [ "$code" = 200 ] && [ "$chunks" -ge 1 ] && [ "$last" = "data: [DONE]" ] && grep -q '[A-Za-z]' <<<"$stext"; then
        ok "streamed completion: $chunks chunks ending with data: [DONE], text \"$stext\""
    else
        not_ok "streamed completion: status $code, $chunks chunks, last line '$last'"
        head -c 600 "$tmp/stream.txt" | sed 's/^/# stream: /'
    fi
}

# start_server BIN ARGS...: `BIN serve --host 127.0.0.1 --port P ARGS...`
# on a random free port (a bind race with another process is retried), its
# stderr in $tmp/server.log.  Returns 0 once /ready answers 200, else 1 with
# the reason in $start_error and nothing left running.
start_server() {
    local bin=$1 code attempt
    shift
    start_error="found no free port"
    for attempt in 1 2 3; do
        free_port || continue
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
