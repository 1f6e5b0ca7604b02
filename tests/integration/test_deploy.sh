#!/usr/bin/env bash
# test_deploy.sh - the multi-replica deployment test (`make test-deploy`;
# `make test` runs it too).  Everything real, on loopback: three
# `ssmd serve` replicas ($BUILD/ssmd, models/default), nginx and HAProxy
# running the shipped deploy/ configs (only the server, listen/bind lines
# rewritten for loopback ports, HAProxy's Docker DNS resolver dropped), and
# a redis-server for the session store.  Checks:
#   - each balancer keeps a session on one replica (consistent hash on the
#     session id, nginx's 404 walk, HAProxy's stick table), for ids the
#     server made and ids the client picked (X-Session-Id on create);
#   - SIGTERM of the replica holding a session: the next request of the
#     session through each balancer continues it exactly (the same greedy
#     tokens as one uninterrupted run on one replica), without a store
#     (--drain-peer nginx: the drain hands idle sessions over) and with the
#     Redis store (--session-store); the handoff ignores http_proxy;
#   - the store: a session continued on replicas 1,2,3,1 in turn (loads on a
#     miss and on a stale copy) answers at once and exactly; the state is in
#     Redis; DELETE leaves only a tombstone there (no `state` field, gen =
#     deleted), every replica then answers 404, and so do both balancers;
#   - SIGKILL of the holder while a request of the session streams, with
#     the store: only that request is lost; the next one continues from the
#     last completed request, exactly (through nginx: no 502 from replicas
#     it still leaves out after earlier kills); with the holder dead, nginx
#     answers 404 (not 502) for a session no live replica holds;
#   - /ready turns 503 at SIGTERM while a request still runs; nginx then
#     passes the replica's 503s on to others and HAProxy's health check marks
#     it down, so clients of that replica's sessions get 200s elsewhere;
#   - every socket of every process the test started is on 127.0.0.1 only
#     (/proc/net), and the rendered configs bind and proxy to 127.0.0.1 only;
#   - every process the test started has exited at the end.
# Failover times (signal to the first successful continued response through
# the balancer) are printed as "# failover ..." TAP comments.  Checks that
# need a server feature this binary lacks (--session-store, --drain-peer,
# X-Session-Id on create) print "ok N # SKIP feature not built"; a missing
# tool (nginx, haproxy, redis-server) skips what needs it.  Prints TAP
# "ok N"/"not ok N" lines; never builds anything; stops every process it
# starts (trap).  Runs in ~12-20 s.
set -u
PATH=$PATH:/usr/sbin:/sbin # nginx and haproxy live there
cd "$(dirname "$0")/../.." || exit 1
BIN=${SSMD_BIN:-${BUILD:-build}/ssmd}
MODEL=${DEPLOY_MODEL:-models/default}
n=0
failed=0
tmp=$(mktemp -d /tmp/ssmd-test-deploy-XXXXXX)
declare -A live=() # pid -> name, for every process started and not yet reaped

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; failed=1; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
note() { echo "# $*"; }
have() { command -v "$1" >/dev/null 2>&1; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
tail_log() { [ -f "$1" ] && tail -n "${2:-8}" "$1" | sed "s|^|# $(basename "$1"): |"; }

# ---- processes -------------------------------------------------------------
# spawn NAME CMD...: runs CMD in the background (output to $tmp/NAME.log);
# sets spid.
spawn() {
    local name=$1; shift
    "$@" >>"$tmp/$name.log" 2>&1 &
    spid=$!
    live[$spid]=$name
}
reap() { wait "$1" 2>/dev/null; local rc=$?; unset "live[$1]"; return $rc; }
# stop_pid PID [SIGNAL]: SIGNAL (TERM), then KILL after 10 s; reaps it.
stop_pid() {
    local p=$1
    [ -n "${live[$p]:-}" ] || return 0
    kill -"${2:-TERM}" "$p" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    reap "$p"
}
# The started processes and their children (nginx workers).
family() {
    local p
    for p in "${!live[@]}"; do
        echo "$p"
        pgrep -P "$p" 2>/dev/null
    done
}
cleanup() {
    local p
    for p in "${!live[@]}"; do stop_pid "$p"; done
    # DEPLOY_KEEP_TMP=1: keep the logs and rendered configs of a failed run
    # (=all: of any run).
    if { [ "$failed" = 1 ] && [ -n "${DEPLOY_KEEP_TMP:-}" ]; } || [ "${DEPLOY_KEEP_TMP:-}" = all ]; then
        echo "# kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

# ---- ports and HTTP ------------------------------------------------------------
port_in_use() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
# Ports below the kernel's ephemeral range (outgoing connections use those).
eph_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
[ "${eph_low:-0}" -gt 12000 ] 2>/dev/null || eph_low=32768
taken=" "
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % (eph_low - 10000)))
        case "$taken" in *" $p "*) continue ;; esac
        port_in_use "$p" && continue
        taken="$taken$p "
        echo "$p"
        return 0
    done
    return 1
}
CURL=(curl -s --noproxy '*' --max-time 30)
code_of() { "${CURL[@]}" -o /dev/null -w '%{http_code}' "$@"; }
wait_200() { # wait_200 URL PID: until URL answers 200 (20 s) while PID lives
    for _ in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(code_of "$1")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
hex32() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# ---- prerequisites -------------------------------------------------------------
if [ ! -x "$BIN" ]; then
    not_ok "$BIN is not built (run make first)"
    exit 1
fi
if ! have curl || [ ! -f "$MODEL/config.json" ]; then
    skip "curl or $MODEL missing (no deployment test)"
    exit 0
fi
if ! have nginx || ! have haproxy; then
    skip "nginx or haproxy is not installed (make test installs nginx-light and haproxy)"
    exit 0
fi
help=$("$BIN" serve --help 2>&1)
has_store=0; has_peer=0
grep -q -- '--session-store' <<<"$help" && have redis-server && has_store=1
grep -q -- '--drain-peer' <<<"$help" && has_peer=1
log_flags=()
grep -q -- '--log-format' <<<"$help" && log_flags=(--log-format json)
why_store="feature not built (ssmd serve has no --session-store)"
have redis-server || why_store="redis-server is not installed"

rport=()
for i in 1 2 3; do rport[i]=$(free_port) || exit 1; done
nport=$(free_port) || exit 1
hport=$(free_port) || exit 1
dport=$(free_port) || exit 1 # redis
NG=http://127.0.0.1:$nport
HP=http://127.0.0.1:$hport
declare -A rpid=() rflags=()

# ---- Redis, replicas, balancers ---------------------------------------------------
redis_pid=""
start_redis() {
    mkdir -p "$tmp/redis"
    spawn redis redis-server --port "$dport" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp/redis" --protected-mode yes --loglevel warning
    redis_pid=$spid
    for _ in $(seq 1 100); do
        [ "$(redis-cli -h 127.0.0.1 -p "$dport" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    return 1
}
rcli() { redis-cli -h 127.0.0.1 -p "$dport" "$@" 2>/dev/null; }

# replica_start I [FLAGS...]: replica I on its port, until /ready is 200.
replica_start() {
    local i=$1; shift
    rflags[$i]="$*"
    spawn "ssmd$i" "$BIN" serve --model "$MODEL" --host 127.0.0.1 --port "${rport[i]}" --threads 1 \
        --drain-timeout 20 --max-tokens 100000 "${log_flags[@]}" "$@"
    rpid[$i]=$spid
    wait_200 "http://127.0.0.1:${rport[i]}/ready" "$spid"
}
replica_restart() { # same flags as before; then HAProxy sees it UP
    local i=$1
    stop_pid "${rpid[$i]}"
    # shellcheck disable=SC2086
    replica_start "$i" ${rflags[$i]} && haproxy_settle
}
# replicas_start [FLAGS...]: (re)starts all three.
replicas_start() {
    local i r=0
    for i in 1 2 3; do [ -n "${rpid[$i]:-}" ] && stop_pid "${rpid[$i]}"; done
    for i in 1 2 3; do replica_start "$i" "$@" || { r=1; tail_log "$tmp/ssmd$i.log"; }; done
    return $r
}

# The shipped configs for loopback: nginx.conf with the addresses of its
# upstream lines replaced by $1 (one "host:port" per line; the first line's
# parameters, max_fails etc., kept as shipped) and its listen line by $2;
# haproxy.cfg likewise, without the Docker DNS resolver (127.0.0.11).
nginx_conf() {
    awk -v servers="$1" -v listen="$2" '
        /^[[:space:]]*server ssmd[0-9]+:8080/ {
            if (!done) { n = split(servers, s, "\n"); for (i = 1; i <= n; i++) { l = $0; sub(/ssmd[0-9]+:8080/, s[i], l); print l }; done = 1 }
            next }
        /^[[:space:]]*listen 8080;/ { print "        listen " listen ";"; next }
        { print }' deploy/nginx/nginx.conf
}
haproxy_conf() {
    awk -v servers="$1" -v bind="$2" '
        /^resolvers / { skip = 1; next }
        skip && /^[^[:space:]#]/ { skip = 0 }
        skip { next }
        /^[[:space:]]*server ssmd[0-9]+ ssmd[0-9]+:8080/ {
            if (!done) { n = split(servers, s, "\n"); for (i = 1; i <= n; i++) print "    server ssmd" i " " s[i]; done = 1 }
            next }
        /^[[:space:]]*bind :8080/ { print "    bind " bind; next }
        { sub(/ resolvers docker/, ""); print }' deploy/haproxy/haproxy.cfg
}
nginx_pid=""; haproxy_pid=""
start_balancers() {
    local servers r=0
    servers=$(printf '127.0.0.1:%s\n' "${rport[1]}" "${rport[2]}" "${rport[3]}")
    mkdir -p "$tmp/nginx"
    nginx_conf "$servers" "127.0.0.1:$nport" >"$tmp/nginx/nginx.conf"
    haproxy_conf "$servers" "127.0.0.1:$hport" >"$tmp/haproxy.cfg"
    spawn nginx nginx -e stderr -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g "daemon off; pid $tmp/nginx/nginx.pid;"
    nginx_pid=$spid
    spawn haproxy haproxy -db -f "$tmp/haproxy.cfg"
    haproxy_pid=$spid
    wait_200 "$NG/health" "$nginx_pid" || { r=1; tail_log "$tmp/nginx.log"; }
    wait_200 "$HP/health" "$haproxy_pid" || { r=1; tail_log "$tmp/haproxy.log"; }
    return $r
}
# haproxy_wait STATE I [SINCE]: until HAProxy's log says ssmdI is STATE (UP
# or DOWN) on a line after line SINCE; 10 s.
haproxy_lines() { wc -l <"$tmp/haproxy.log"; }
# haproxy_settle: until no server is DOWN in HAProxy's view (its last UP/DOWN
# log line), e.g. after a replica restarted; 10 s.
haproxy_settle() {
    local i
    for _ in $(seq 1 100); do
        for i in 1 2 3; do
            [ "$(grep -o "ssmd/ssmd$i is \(UP\|DOWN\)" "$tmp/haproxy.log" | tail -1)" = "ssmd/ssmd$i is DOWN" ] && break
            [ "$i" = 3 ] && return 0
        done
        sleep 0.1
    done
    return 1
}
haproxy_wait() {
    for _ in $(seq 1 100); do
        tail -n +"$((${3:-0} + 1))" "$tmp/haproxy.log" | grep -q "ssmd/ssmd$2 is $1" && return 0
        sleep 0.1
    done
    return 1
}

# ---- requests ---------------------------------------------------------------------
# The replica index of the X-Upstream header in $tmp/h: nginx's last
# address (after a 404 walk), HAProxy's server name.
where_of() {
    local u i
    u=$(tr -d '\r' <"$tmp/h" | sed -n 's/^[Xx]-[Uu]pstream: *//p' | tail -1)
    u=${u##* }
    case "$u" in
    ssmd[0-9]) echo "${u#ssmd}"; return ;;
    esac
    for i in 1 2 3; do [ "$u" = "127.0.0.1:${rport[i]}" ] && { echo "$i"; return; }; done
    echo "?"
}
# JSON without jq (not a test dependency): the bodies here are ssmd's own
# answers, and prompts are plain ASCII without quotes or backslashes.
# json_num FILE NAME / json_str FILE NAME: the first "NAME": value.
json_num() { grep -o "\"$2\": *-\?[0-9]*" "$1" 2>/dev/null | head -1 | grep -o -- '-\?[0-9]*$'; }
json_str() { grep -o "\"$2\": *\"[^\"]*\"" "$1" 2>/dev/null | head -1 | sed 's/.*: *"\(.*\)"$/\1/'; }
# json_tokens FILE: the "tokens" array of a completion, comma-joined.
json_tokens() { grep -o '"tokens": *\[[0-9, ]*\]' "$1" 2>/dev/null | head -1 | sed 's/.*\[\(.*\)\]/\1/; s/ //g'; }
# complete_body ID PROMPT MAX [EXTRA]: a greedy completion request body.
complete_body() {
    printf '{%s"prompt": "%s", "max_tokens": %s, "temperature": 0, "ignore_eos": true%s}' \
        "${1:+\"session\": \"$1\", }" "$2" "$3" "${4:-}"
}
# complete BASE ID PROMPT MAX: a greedy completion of session ID; sets code,
# where (replica index behind a balancer) and toks (token ids, comma-joined).
complete() {
    code=$("${CURL[@]}" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H "X-Session-Id: $2" -d "$(complete_body "$2" "$3" "$4")" "$1/v1/completions")
    where=$(where_of)
    toks=$(json_tokens "$tmp/b")
}
# new_session BASE [ID]: POST /v1/sessions (with X-Session-Id: ID when
# given); sets code, where and sid (the id the server answered).
new_session() {
    local h=()
    [ -n "${2:-}" ] && h=(-H "X-Session-Id: $2")
    code=$("${CURL[@]}" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' -H 'Content-Type: application/json' \
        "${h[@]}" -d '{}' "$1/v1/sessions")
    where=$(where_of)
    sid=$(json_str "$tmp/b" id)
}
# One uninterrupted conversation: PROMPTS[k] continued with MAXTOK tokens.
PROMPTS=("Hello" " and" " the" " of")
MAXTOK=8
# metric BASE NAME: the value of an unlabelled metric (0 when absent).
metric() {
    "${CURL[@]}" "$1/metrics" | awk -v m="$2" '$1 == m { print int($2); found = 1 } END { if (!found) print 0 }'
}
# stream_start BASE ID: a long streamed completion of session ID (ID may be
# empty) in the background; returns when its first token arrived.  Sets cpid.
stream_start() {
    local body h=()
    body=$(complete_body "$2" " In the beginning" 100000 ', "stream": true')
    [ -n "$2" ] && h=(-H "X-Session-Id: $2")
    rm -f "$tmp/stream.out"
    spawn curl "${CURL[@]}" -N --max-time 60 -H 'Content-Type: application/json' "${h[@]}" -d "$body" \
        -o "$tmp/stream.out" "$1/v1/completions"
    cpid=$spid
    for _ in $(seq 1 300); do
        grep -q '^data: {' "$tmp/stream.out" 2>/dev/null && return 0
        kill -0 "$cpid" 2>/dev/null || return 1
        sleep 0.01
    done
    return 1
}

# ---- sockets: 127.0.0.1 only ------------------------------------------------
# Appends to $tmp/sock.bad every TCP/UDP socket (IPv4 or IPv6) of a started
# process (and its children) whose local or remote address is not
# 127.0.0.1 (remote 0.0.0.0:0 = listening/unconnected is fine); counts the
# sockets seen in $tmp/sock.n.
sock_check() {
    local p inodes="" name
    for p in $(family); do
        name=$(cat "/proc/$p/comm" 2>/dev/null) || continue
        inodes="$inodes $(find "/proc/$p/fd" -maxdepth 1 -lname 'socket:*' -printf '%l\n' 2>/dev/null |
            sed -n "s/^socket:\[\([0-9]*\)\]$/\1=$name/p" | tr '\n' ' ')"
    done
    awk -v inodes="$inodes" -v where="$1" '
        BEGIN { n = split(inodes, a, " "); for (i = 1; i <= n; i++) { split(a[i], kv, "="); own[kv[1]] = kv[2] } }
        FNR == 1 { proto = FILENAME; sub(/.*\//, "", proto); next }
        ($10 in own) {
            seen++
            split($2, l, ":"); split($3, r, ":")
            good_l = (l[1] == "0100007F" || l[1] == "0000000000000000FFFF00000100007F")
            good_r = (r[1] == "0100007F" || r[1] == "0000000000000000FFFF00000100007F" ||
                      ((r[1] == "00000000" || r[1] ~ /^0+$/) && r[2] == "0000"))
            if (!(good_l && good_r))
                printf "%s: %s %s socket %s -> %s (state %s)\n", where, own[$10], proto, $2, $3, $4 >> "'"$tmp/sock.bad"'"
        }
        END { print seen + 0 >> "'"$tmp/sock.n"'" }' /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6
}

# =============================================================================
if have redis-server && ! start_redis; then
    has_store=0; why_store="redis-server did not start"; tail_log "$tmp/redis.log"
    stop_pid "$redis_pid"
fi
peer_flags=()
[ "$has_peer" = 1 ] && peer_flags=(--drain-peer "$NG")
if replicas_start "${peer_flags[@]}" && start_balancers; then
    ok "redis-server, 3 ssmd replicas, nginx and HAProxy (shipped configs) up on 127.0.0.1:${rport[1]},${rport[2]},${rport[3]} (nginx $nport, HAProxy $hport, redis $dport)"
else
    not_ok "the replicas or the balancers did not start"
    exit 1
fi
note "features: session store $has_store, drain peer $has_peer"

# Rendered configs: listen/bind and every upstream on 127.0.0.1.
bad=$(grep -E '^[[:space:]]*(listen|server) ' "$tmp/nginx/nginx.conf" | grep -v '127\.0\.0\.1:[0-9]' | grep -v '^[[:space:]]*server {')
bad="$bad$(grep -E '^[[:space:]]*(bind|server|nameserver) ' "$tmp/haproxy.cfg" | grep -v '127\.0\.0\.1:[0-9]')"
bad="$bad$(grep -E '^[[:space:]]*(resolver|resolvers) ' "$tmp/nginx/nginx.conf" "$tmp/haproxy.cfg")"
if [ -z "$bad" ]; then ok "rendered nginx.conf and haproxy.cfg listen on and proxy to 127.0.0.1 only (no resolver)"
else not_ok "rendered configs name other addresses: $bad"; fi
sock_check startup

# ---- the reference: one uninterrupted conversation on one replica ---------------
R1=http://127.0.0.1:${rport[1]}
new_session "$R1"
ref=(); ntok=(); total=0; bad=""
for k in 0 1 2 3; do
    complete "$R1" "$sid" "${PROMPTS[k]}" "$MAXTOK"
    [ "$code" = 200 ] && [ "$(tr ',' '\n' <<<"$toks" | grep -c .)" = "$MAXTOK" ] || bad="$bad request $k: $code $(head -c 200 "$tmp/b");"
    ref[k]=$toks
    v=$(json_num "$tmp/b" total_tokens); total=$((total + ${v:-0}))
    ntok[k]=$total
done
"${CURL[@]}" -X DELETE "$R1/v1/sessions/$sid" >/dev/null
# A fresh session given the third prompt must differ from the continuation,
# or a replica that lost the state would pass the checks below.
new_session "$R1"
complete "$R1" "$sid" "${PROMPTS[2]}" "$MAXTOK"
fresh2=$toks
"${CURL[@]}" -X DELETE "$R1/v1/sessions/$sid" >/dev/null
if [ -z "$bad" ] && [ "$fresh2" != "${ref[2]}" ] && [ -n "$fresh2" ]; then
    ok "reference: 4 greedy requests of one session on one replica (${ref[*]}); request 3 differs from a fresh session's ($fresh2)"
else
    not_ok "reference run:$bad fresh '$fresh2' vs continued '${ref[2]}'"
    exit 1
fi
# continue_check BASE ID K0 LABEL: requests K0..3 of the conversation through
# BASE; sets cbad (mismatches) and cwhere (replicas that served them).
continue_check() {
    local k
    cbad=""; cwhere=""
    for k in $(seq "$3" 3); do
        complete "$1" "$2" "${PROMPTS[k]}" "$MAXTOK"
        cwhere="$cwhere,$where"
        [ "$code" = 200 ] && [ "$toks" = "${ref[k]}" ] || cbad="$cbad request $k: $code at $where tokens '$toks' want '${ref[k]}';"
    done
}

# ---- affinity through each balancer ---------------------------------------------
# hashing BASE NAME: random ids always reach the same replica, in the header
# (GET /v1/models) or in a session path, and spread over replicas.
hashing() {
    local lb=$1 name=$2 id a b bad="" used="" distinct
    for _ in $(seq 1 16); do
        id=$(hex32)
        a=$(code_of -D "$tmp/h" -H "X-Session-Id: $id" "$lb/v1/models"); b=$(where_of)
        [ "$(code_of -D "$tmp/h" -H "X-Session-Id: $id" "$lb/v1/models")" = 200 ] && [ "$a" = 200 ] &&
            [ "$b" != "?" ] && [ "$(where_of)" = "$b" ] || bad="$bad $id: $a@$b then @$(where_of);"
        # The same id in a session path: first replica tried = the header's.
        code_of -D "$tmp/h" "$lb/v1/sessions/$id/state" >/dev/null
        [ "$name" = haproxy ] || [ "$(tr -d '\r' <"$tmp/h" | sed -n 's/^[Xx]-[Uu]pstream: *//p' | tail -1 | cut -d, -f1)" = "127.0.0.1:${rport[b]:-0}" ] ||
            bad="$bad $id: path walk does not start at the header's replica;"
        used="$used $b"
    done
    distinct=$(tr ' ' '\n' <<<"$used" | sort -u | grep -c .)
    [ "$distinct" -ge 2 ] || bad="$bad 16 ids all went to$used;"
    if [ -z "$bad" ]; then ok "$name: an X-Session-Id (header or /v1/sessions/{id} path) always reaches the same replica (16 ids over $distinct replicas)"
    else not_ok "$name:$bad"; fi
}
sum_metric() { local i t=0; for i in 1 2 3; do t=$((t + $(metric "http://127.0.0.1:${rport[i]}" "$1"))); done; echo $t; }
sum_4xx() {
    local i t=0 v
    for i in 1 2 3; do
        v=$("${CURL[@]}" "http://127.0.0.1:${rport[i]}/metrics" | sed -n 's/^ssmd_http_requests_total{code="4xx"} \([0-9]*\).*/\1/p')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
# affinity BASE NAME: a server-made session continued 12 times through the
# balancer stays on the one replica that holds it.
affinity() {
    local lb=$1 name=$2 first="" bad="" e0 holders=0 i tokens extra
    new_session "$lb"
    [ "$code" = 200 ] && [ -n "$sid" ] || { not_ok "$name: POST /v1/sessions gave $code"; return; }
    local echoed; echoed=$(tr -d '\r' <"$tmp/h" | sed -n 's/^[Xx]-[Ss]ession-[Ii]d: *//p')
    e0=$(sum_4xx)
    for i in $(seq 1 12); do
        complete "$lb" "$sid" "ab" 2
        [ -z "$first" ] && first=$where
        [ "$code" = 200 ] && [ "$where" = "$first" ] || bad="$bad request $i: $code at $where (first $first);"
    done
    extra=$(($(sum_4xx) - e0))
    code=$("${CURL[@]}" -o "$tmp/b" -w '%{http_code}' "$lb/v1/sessions/$sid")
    tokens=$(json_num "$tmp/b" n_tokens); tokens=${tokens:-0}
    [ "$code" = 200 ] && [ "$tokens" -ge 36 ] || bad="$bad GET /v1/sessions/{id}: $code, n_tokens $tokens;"
    if [ "$has_store" = 0 ] || [[ " ${rflags[1]} " != *" --session-store "* ]]; then
        for i in 1 2 3; do
            [ "$(code_of "http://127.0.0.1:${rport[i]}/v1/sessions/$sid")" = 200 ] && holders=$((holders + 1))
        done
        [ "$holders" = 1 ] || bad="$bad $holders replicas hold the session;"
    fi
    # HAProxy learns the holder from the create response's X-Session-Id.
    [ "$name" = haproxy ] && [ "$echoed" = "$sid" ] && [ "$extra" != 0 ] &&
        bad="$bad $extra requests went to a replica without the session (stick table not learnt);"
    if [ -z "$bad" ]; then ok "$name: a server-made session continued 12 times stays on replica $first (n_tokens $tokens, $extra 404 hops over 13 requests)"
    else not_ok "$name:$bad"; fi
    "${CURL[@]}" -X DELETE -H "X-Session-Id: $sid" "$lb/v1/sessions/$sid" >/dev/null
}
hashing "$NG" nginx
affinity "$NG" nginx
hashing "$HP" haproxy
affinity "$HP" haproxy

# client_session BASE NAME: a session whose id the client picked (X-Session-Id
# on POST /v1/sessions), so it is made where the balancer hashes it; runs
# requests 0 and 1 through BASE.  Sets sid and holder; returns 1 (after
# printing not ok) on failure, 2 when the server ignores the header.
client_session() {
    local want k
    want=$(hex32)
    new_session "$1" "$want"
    if [ "$code" = 200 ] && [ "$sid" != "$want" ]; then
        "${CURL[@]}" -X DELETE "$1/v1/sessions/$sid" >/dev/null
        return 2
    fi
    [ "$code" = 200 ] || { not_ok "$2: POST /v1/sessions with X-Session-Id: $code $(head -c 200 "$tmp/b")"; return 1; }
    holder=$where
    for k in 0 1; do
        complete "$1" "$sid" "${PROMPTS[k]}" "$MAXTOK"
        if [ "$code" != 200 ] || [ "$toks" != "${ref[k]}" ] || [ "$where" != "$holder" ]; then
            not_ok "$2: request $k of a client-named session: $code at $where (created at $holder), tokens '$toks' want '${ref[k]}'"
            return 1
        fi
    done
    return 0
}
# wait_exit PID: until it exits (25 s); sets rc to its exit status
# ("running" if it did not exit).  Not in a subshell: it reaps the child.
wait_exit() {
    for _ in $(seq 1 250); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$1" 2>/dev/null; then rc=running; return 1; fi
    reap "$1"; rc=$?
}
# retry_next BASE ID K: request K of the conversation until it gets 200 (8 s;
# 404/502/503 change nothing, so a client may retry them); sets code, toks,
# where and tries (the failed attempts).
retry_next() {
    local end=$(($(now_ms) + 8000))
    tries=0; fails=""
    while :; do
        last_ms=$(now_ms)
        complete "$1" "$2" "${PROMPTS[$3]}" "$MAXTOK"
        last_ms=$(($(now_ms) - last_ms))
        [ "$code" = 200 ] && return 0
        case "$code" in 404 | 502 | 503 | 000) tries=$((tries + 1)); fails="$fails $code" ;; *) return 1 ;; esac
        [ "$(now_ms)" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# ---- SIGTERM of the holder, no store: --drain-peer hands the session over -------
# sigterm_peer BASE NAME
sigterm_peer() {
    local lb=$1 name=$2 t0 rc ms
    if [ "$has_peer" = 0 ]; then skip "$name: SIGTERM of the holder with --drain-peer: feature not built"; return; fi
    client_session "$lb" "$name"
    case $? in
    1) return ;;
    2) skip "$name: SIGTERM with --drain-peer: feature not built (POST /v1/sessions ignores X-Session-Id)"; return ;;
    esac
    local x=$holder
    t0=$(now_ms)
    kill -TERM "${rpid[$x]}"
    wait_exit "${rpid[$x]}"
    local exited_ms=$(($(now_ms) - t0))
    retry_next "$lb" "$sid" 2
    ms=$(($(now_ms) - t0))
    local got2=$toks w2=$where c2=$code
    continue_check "$lb" "$sid" 3
    note "failover $name SIGTERM, no store (--drain-peer $NG): ${ms}ms to the continued response (holder exited after ${exited_ms}ms, $tries failed tries before${fails:+:$fails})"
    if [ "$rc" = 0 ] && [ "$c2" = 200 ] && [ "$got2" = "${ref[2]}" ] && [ "$w2" != "$x" ] && [ -z "$cbad" ]; then
        ok "$name: SIGTERM of the holder (replica $x, no store): the drain handed the session to a peer; requests 2-3 continue exactly on replicas $w2$cwhere (${ms}ms)"
    else
        not_ok "$name: SIGTERM of the holder (replica $x, exit $rc, no store): request 2 $c2 at $w2 tokens '$got2' want '${ref[2]}' after $tries tries;$cbad"
        tail_log "$tmp/ssmd$x.log" 5
    fi
    "${CURL[@]}" -X DELETE -H "X-Session-Id: $sid" "$lb/v1/sessions/$sid" >/dev/null
    replica_restart "$x" || not_ok "replica $x did not restart"
}
sigterm_peer "$NG" nginx
sigterm_peer "$HP" haproxy

# The handoff talks to the peer it was given and nothing else, even when the
# replica's environment names an HTTP proxy (libcurl honours http_proxy and
# ALL_PROXY unless told not to): replica 1, with proxies pointing at a dead
# loopback port, hands a session straight to replica 2.
proxy_env_handoff() {
    if [ "$has_peer" = 0 ]; then skip "drain handoff ignores proxy variables: feature not built"; return; fi
    local dead id c k ok2=1
    dead=$(free_port) || return
    stop_pid "${rpid[1]}"
    http_proxy=http://127.0.0.1:$dead HTTP_PROXY=http://127.0.0.1:$dead ALL_PROXY=http://127.0.0.1:$dead \
        all_proxy=http://127.0.0.1:$dead replica_start 1 --drain-peer "http://127.0.0.1:${rport[2]}" ||
        { not_ok "replica 1 with proxy variables did not start"; return; }
    R1=http://127.0.0.1:${rport[1]}
    id=$(hex32)
    new_session "$R1" "$id"
    for k in 0 1; do complete "$R1" "$id" "${PROMPTS[k]}" "$MAXTOK"; [ "$code" = 200 ] || ok2=0; done
    kill -TERM "${rpid[1]}"
    wait_exit "${rpid[1]}"
    complete "http://127.0.0.1:${rport[2]}" "$id" "${PROMPTS[2]}" "$MAXTOK"
    if [ "$ok2" = 1 ] && [ "$code" = 200 ] && [ "$toks" = "${ref[2]}" ]; then
        ok "the drain handoff goes to its peer, not to the http_proxy/ALL_PROXY of the environment (the peer continues the session exactly)"
    else
        not_ok "drain handoff with http_proxy=http://127.0.0.1:$dead set: replica 2 answers $code, tokens '$toks' want '${ref[2]}'"
        grep drain_handoff "$tmp/ssmd1.log" | tail -n 2 | sed 's/^/# /'
    fi
    "${CURL[@]}" -X DELETE "http://127.0.0.1:${rport[2]}/v1/sessions/$id" >/dev/null
    replica_start 1 "${peer_flags[@]}" && haproxy_settle
}
proxy_env_handoff
sock_check "no store"

# ---- with the Redis session store ------------------------------------------------
# store_state ID: 1 when Redis holds a state for session ID (the `state`
# field of the hash ssmd:session:<id>), else 0.
store_state() { rcli HEXISTS "ssmd:session:$1" state; }
if [ "$has_store" = 1 ]; then
    if replicas_start --session-store "redis://127.0.0.1:$dport"; then
        ok "3 replicas restarted with --session-store redis://127.0.0.1:$dport"
    else
        not_ok "replicas with --session-store did not start"
    fi
    # HAProxy: every replica UP (its health check) for the checks below.
    haproxy_settle
fi

# sigterm_store BASE NAME: SIGTERM of the holder; the next request right away.
sigterm_store() {
    local lb=$1 name=$2 t0 rc ms x other
    if [ "$has_store" = 0 ]; then skip "$name: SIGTERM of the holder with the Redis store: $why_store"; return; fi
    client_session "$lb" "$name"
    case $? in 1) return ;; 2) skip "$name: SIGTERM with the store: feature not built (X-Session-Id on create)"; return ;; esac
    x=$holder
    local in_store; in_store=$(store_state "$sid")
    t0=$(now_ms)
    kill -TERM "${rpid[$x]}"
    # The next request once the drain began (a request that arrives before
    # ssmd's loop sees the signal is still served there, rightly).
    for _ in $(seq 1 200); do [ "$(code_of "http://127.0.0.1:${rport[x]}/ready")" = 200 ] || break; sleep 0.01; done
    retry_next "$lb" "$sid" 2
    ms=$(($(now_ms) - t0))
    local got2=$toks w2=$where c2=$code
    wait_exit "${rpid[$x]}"
    continue_check "$lb" "$sid" 3
    # The store holds the newest state: a replica that never saw the
    # session loads it with every token.
    other=$(( (x % 3) + 1 )); [ "$other" = "$w2" ] && other=$(( (other % 3) + 1 ))
    local nt
    "${CURL[@]}" -o "$tmp/b" -H "X-Session-Id: $sid" "http://127.0.0.1:${rport[other]}/v1/sessions/$sid"
    nt=$(json_num "$tmp/b" n_tokens)
    note "failover $name SIGTERM, Redis store: ${ms}ms to the continued response ($tries failed tries before${fails:+:$fails}; that request took ${last_ms}ms)"
    if [ "$in_store" = 1 ] && [ "$rc" = 0 ] && [ "$c2" = 200 ] && [ "$got2" = "${ref[2]}" ] && [ "$w2" != "$x" ] && [ -z "$cbad" ] && [ "$nt" = "${ntok[3]}" ]; then
        ok "$name: SIGTERM of the holder (replica $x, store): requests 2-3 continue exactly on replicas $w2$cwhere (${ms}ms); replica $other loads all ${ntok[3]} tokens from the store"
    else
        not_ok "$name: SIGTERM of the holder (replica $x, exit $rc, store; in redis after request 1: '$in_store'): request 2 $c2 at $w2 tokens '$got2' want '${ref[2]}' after $tries tries;$cbad replica $other sees n_tokens $nt want ${ntok[3]}"
        tail_log "$tmp/ssmd$x.log" 5
    fi
    "${CURL[@]}" -X DELETE -H "X-Session-Id: $sid" "$lb/v1/sessions/$sid" >/dev/null
    replica_restart "$x" || not_ok "replica $x did not restart"
}
# sigkill_store BASE NAME: SIGKILL of the holder while a request of the
# session streams: that request is lost, the next continues from request 1.
sigkill_store() {
    local lb=$1 name=$2 t0 ms x rc
    if [ "$has_store" = 0 ]; then skip "$name: SIGKILL of the holder with the Redis store: $why_store"; return; fi
    client_session "$lb" "$name"
    case $? in 1) return ;; 2) skip "$name: SIGKILL with the store: feature not built (X-Session-Id on create)"; return ;; esac
    x=$holder
    if ! stream_start "$lb" "$sid"; then
        not_ok "$name: a streamed request of the session did not start"; return
    fi
    t0=$(now_ms)
    kill -KILL "${rpid[$x]}"
    reap "${rpid[$x]}"
    rc=$?
    retry_next "$lb" "$sid" 2
    ms=$(($(now_ms) - t0))
    local got2=$toks w2=$where c2=$code
    continue_check "$lb" "$sid" 3
    stop_pid "$cpid"
    note "failover $name SIGKILL, Redis store: ${ms}ms to the continued response ($tries failed tries before${fails:+:$fails}; that request took ${last_ms}ms)"
    if [ "$rc" = 137 ] && [ "$c2" = 200 ] && [ "$got2" = "${ref[2]}" ] && [ "$w2" != "$x" ] && [ -z "$cbad" ]; then
        ok "$name: SIGKILL of the holder (replica $x) mid-stream, store: only the streamed request is lost; requests 2-3 continue exactly on replicas $w2$cwhere (${ms}ms)"
    else
        not_ok "$name: SIGKILL of the holder (replica $x, status $rc): request 2 $c2 at $w2 tokens '$got2' want '${ref[2]}' after $tries tries;$cbad"
    fi
    "${CURL[@]}" -X DELETE -H "X-Session-Id: $sid" "$lb/v1/sessions/$sid" >/dev/null
    # nginx with replica x dead (refused, or left out after max_fails): a
    # session that no live replica holds is 404, not nginx's 502 (the walk
    # runs out of live replicas before it runs out of tries).
    if [ "$name" = nginx ]; then
        local id2 c k b404=""
        for k in 0 1 2 3 4 5 6; do
            id2=$sid; [ "$k" = 0 ] || id2=$(hex32)
            c=$(code_of -D "$tmp/h" -H "X-Session-Id: $id2" "$lb/v1/sessions/$id2")
            [ "$c" = 404 ] || b404="$b404 $id2: $c via $(tr -d '\r' <"$tmp/h" | sed -n 's/^[Xx]-[Uu]pstream: *//p');"
        done
        if [ -z "$b404" ]; then ok "nginx: with replica $x dead, GET of the deleted session and of 6 unknown ids: 404 each"
        else not_ok "nginx: with replica $x dead, GET of a session no live replica holds:$b404"; fi
    fi
    replica_restart "$x" || not_ok "replica $x did not restart"
}
# timed BASE ID K: request K of session ID straight to a replica; sets code,
# toks and ms (its time; 5 s at most).
timed() {
    local t
    t=$(curl -s --noproxy '*' --max-time 5 -o "$tmp/b" -w '%{http_code} %{time_total}' -H 'Content-Type: application/json' \
        -H "X-Session-Id: $2" -d "$(complete_body "$2" "${PROMPTS[$3]}" "$MAXTOK")" "$1/v1/completions")
    code=${t%% *}
    ms=$(awk -v t="${t#* }" 'BEGIN { printf "%d", t * 1000 }')
    toks=$(json_tokens "$tmp/b")
}
store_basics() {
    if [ "$has_store" = 0 ]; then
        skip "store: writes, loads on other replicas: $why_store"
        skip "store: DELETE removes the session everywhere: $why_store"
        return
    fi
    local bad="" i w0 id times="" slow=0 c
    id=$(hex32)
    new_session "http://127.0.0.1:${rport[1]}" "$id"
    [ "$code" = 200 ] || bad="$bad create: $code;"
    # Requests 0..3 on replicas 1, 2, 3, 1: each continues the state the
    # previous replica wrote (loads), and answers at once (the state write is
    # acknowledged by a local Redis in well under a millisecond).
    local k=0
    for i in 1 2 3 1; do
        timed "http://127.0.0.1:${rport[i]}" "$id" "$k"
        times="$times ${ms}ms"
        [ "$ms" -lt 1000 ] || slow=1
        [ "$code" = 200 ] && [ "$toks" = "${ref[k]}" ] || bad="$bad request $k on replica $i: $code tokens '$toks' want '${ref[k]}';"
        k=$((k + 1))
    done
    [ "$slow" = 0 ] || bad="$bad slow answers:$times (a reply waiting for an unrelated event?);"
    [ "$(store_state "$id")" = 1 ] || bad="$bad no ssmd:session:$id key in Redis;"
    w0=$(sum_metric ssmd_store_writes_total)
    [ "$w0" -ge 4 ] || bad="$bad ssmd_store_writes_total is $w0;"
    [ "$(sum_metric ssmd_store_loads_total)" -ge 2 ] || bad="$bad ssmd_store_loads_total is below 2;"
    [ "$(sum_metric ssmd_store_errors_total)" = 0 ] || bad="$bad ssmd_store_errors_total is not 0;"
    if [ -z "$bad" ]; then ok "store: requests 0-3 of a session on replicas 1,2,3,1 continue exactly through Redis (ssmd:session:<id>; times$times; $w0 writes, no errors)"
    else not_ok "store:$bad"; fi
    # DELETE through nginx: gone from Redis and from every replica (two of
    # them hold copies they loaded; through nginx, a 404 walks on to them).
    bad=""
    code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -X DELETE -H "X-Session-Id: $id" "$NG/v1/sessions/$id")
    [ "$code" = 200 ] || bad="$bad DELETE: $code;"
    # No state left in Redis, only a tombstone (gen = "deleted") that tells
    # replicas holding a copy to drop it.
    [ "$(store_state "$id")" = 0 ] || bad="$bad the state is still in Redis after DELETE;"
    local gen; gen=$(rcli HGET "ssmd:session:$id" gen)
    [ "$gen" = deleted ] || bad="$bad no tombstone in Redis after DELETE (gen '$gen', want 'deleted');"
    for i in 1 2 3; do
        c=$(code_of -H "X-Session-Id: $id" "http://127.0.0.1:${rport[i]}/v1/sessions/$id")
        [ "$c" = 404 ] || bad="$bad replica $i still answers $c for it;"
    done
    c=$(code_of -H "X-Session-Id: $id" "$NG/v1/sessions/$id")
    [ "$c" = 404 ] || bad="$bad GET through nginx after DELETE: $c;"
    c=$(code_of -H "X-Session-Id: $id" "$HP/v1/sessions/$id")
    [ "$c" = 404 ] || bad="$bad GET through HAProxy after DELETE: $c;"
    if [ -z "$bad" ]; then ok "store: DELETE through nginx removes the session's state from Redis (a tombstone, gen = deleted) and from every replica; GET through nginx and HAProxy: 404"
    else not_ok "store: DELETE of a session that 3 replicas hold:$bad"; fi
}
store_basics
sigterm_store "$NG" nginx
sigterm_store "$HP" haproxy
sigkill_store "$NG" nginx
sigkill_store "$HP" haproxy
sock_check store

# ---- /ready during a drain: the balancers stop sending ---------------------------
# A long request keeps replica x draining; ids that hash to it are then
# served elsewhere by both balancers.  x: a replica both balancers send ids
# to right now (nginx shuns a replica for fail_timeout after max_fails
# errors, e.g. its stale keep-alive connections to a killed one).
route_ids() { # route_ids BASE: 36 random ids as "REPLICA ID" lines
    local id
    for _ in $(seq 1 36); do
        id=$(hex32)
        code_of -D "$tmp/h" -H "X-Session-Id: $id" "$1/v1/models" >/dev/null
        echo "$(where_of) $id"
    done
}
# Both balancers in their steady state first: HAProxy sees every replica UP,
# and nginx forgets the failures it counted while replicas were killed and
# restarted above (a reload re-reads the upstream; else a replica it still
# shuns for fail_timeout plus the draining one can leave no live upstream).
kill -HUP "$nginx_pid"
sleep 0.5
l0=$(haproxy_lines)
haproxy_settle
route_ids "$NG" >"$tmp/nroutes"
route_ids "$HP" >"$tmp/hroutes"
x=2
for i in 2 3 1; do
    if [ "$(grep -c "^$i " "$tmp/nroutes")" -ge 4 ] && [ "$(grep -c "^$i " "$tmp/hroutes")" -ge 4 ]; then x=$i; break; fi
done
mapfile -t nids < <(grep "^$x " "$tmp/nroutes" | head -4 | cut -d' ' -f2)
mapfile -t hids < <(grep "^$x " "$tmp/hroutes" | head -4 | cut -d' ' -f2)
RX=http://127.0.0.1:${rport[x]}
# POST /v1/sessions answered 503 by replica x (its request log).
x5xx() { grep -c 'POST /v1/sessions 503 ' "$tmp/ssmd$x.log"; }
if [ "${#nids[@]}" != 4 ] || [ "${#hids[@]}" != 4 ]; then
    not_ok "no ids hashing to replica $x found (nginx ${#nids[@]}, HAProxy ${#hids[@]})"
elif ! stream_start "$RX" ""; then
    not_ok "a long streamed request on replica $x did not start"
else
    t0=$(now_ms)
    kill -TERM "${rpid[$x]}"
    r503=""
    for _ in $(seq 1 50); do
        c=$(code_of "$RX/ready")
        [ "$c" = 503 ] && { r503=$(($(now_ms) - t0)); break; }
        sleep 0.02
    done
    alive=0; kill -0 "${rpid[$x]}" 2>/dev/null && kill -0 "$cpid" 2>/dev/null && alive=1
    if [ -n "$r503" ] && [ "$alive" = 1 ]; then
        ok "/ready is 503 ${r503}ms after SIGTERM while a request still runs on the draining replica"
    else
        not_ok "/ready during the drain: last status '$c', replica and its request still running: $alive"
    fi
    # nginx: the replica's 503 makes nginx try the next one; 3 of them
    # (max_fails) and nginx skips it for fail_timeout.
    bad=""; ws=""
    e0=$(x5xx)
    for id in "${nids[@]}"; do
        new_session "$NG" "$id"
        ws="$ws$where"
        [ "$code" = 200 ] && [ "$where" != "$x" ] || bad="$bad $id: $code at $where;"
    done
    e1=$(x5xx)
    [ $((e1 - e0)) -le 3 ] || bad="$bad nginx tried replica $x $((e1 - e0)) times (max_fails is 3);"
    if [ -z "$bad" ]; then ok "nginx: sessions whose ids hash to the draining replica $x are made on others ($ws); replica $x saw $((e1 - e0)) of them (503, max_fails 3), no 503 reached the client"
    else not_ok "nginx during the drain of replica $x:$bad"; grep -v '^127' "$tmp/nginx.log" | tail_log /dev/stdin 5; fi
    # HAProxy: its health check (GET /ready, fastinter 500ms fall 2) marks it DOWN.
    if haproxy_wait DOWN "$x" "$l0"; then
        down=$(($(now_ms) - t0))
        bad=""; ws=""
        e0=$(x5xx)
        for id in "${hids[@]}"; do
            new_session "$HP" "$id"
            ws="$ws$where"
            [ "$code" = 200 ] && [ "$where" != "$x" ] || bad="$bad $id: $code at $where;"
        done
        e1=$(x5xx)
        [ "$e1" = "$e0" ] || bad="$bad HAProxy still sent $((e1 - e0)) of them to replica $x;"
        alive=0; kill -0 "${rpid[$x]}" 2>/dev/null && alive=1
        if [ -z "$bad" ] && [ "$alive" = 1 ]; then ok "HAProxy: its /ready health check marks the draining replica $x DOWN after ${down}ms; then its ids go straight to others ($ws), none to replica $x"
        else not_ok "HAProxy during the drain of replica $x (still running: $alive):$bad"; fi
        note "HAProxy marked the draining replica DOWN ${down}ms after SIGTERM"
    else
        not_ok "HAProxy did not mark the draining replica $x DOWN within 10 s"
        tail_log "$tmp/haproxy.log" 5
    fi
    # The client goes away: the request is canceled, the drain ends, exit 0.
    stop_pid "$cpid"
    wait_exit "${rpid[$x]}"
    if [ "$rc" = 0 ]; then ok "the draining replica exits 0 once its last request ended ($(($(now_ms) - t0))ms after SIGTERM)"
    else not_ok "the draining replica: exit status $rc"; tail_log "$tmp/ssmd$x.log" 5; fi
fi
sock_check drain

# ---- 127.0.0.1 only, then stop everything ------------------------------------------
checked=$(awk '{ s += $1 } END { print s + 0 }' "$tmp/sock.n" 2>/dev/null)
if [ ! -s "$tmp/sock.bad" ] && [ "${checked:-0}" -gt 0 ]; then
    ok "every TCP/UDP socket of every started process is on 127.0.0.1 ($checked sockets over 4 samples: redis, replicas, nginx master and workers, HAProxy, clients)"
else
    not_ok "sockets on other addresses (or none seen: $checked):"
    sort -u "$tmp/sock.bad" 2>/dev/null | head -10 | sed 's/^/# /'
fi
all=$(family | sort -u)
for p in "${!live[@]}"; do stop_pid "$p"; done
left=""
for p in $all; do kill -0 "$p" 2>/dev/null && left="$left $p($(cat "/proc/$p/comm" 2>/dev/null))"; done
if [ -z "$left" ] && [ "${#live[@]}" = 0 ]; then ok "every process the test started has exited ($(wc -w <<<"$all") incl. nginx workers)"
else not_ok "processes still running:$left"; fi
exit $failed
