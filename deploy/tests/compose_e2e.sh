#!/usr/bin/env bash
# compose_e2e.sh - runs deploy/docker-compose.yml as shipped (3 ssmd
# replicas with the Redis session store behind nginx) and checks that one
# session continues exactly while the replica serving it is stopped
# (SIGTERM) and then another is killed (SIGKILL), through nginx and through
# HAProxy (the haproxy profile): `make test-compose`.
#
# Needs a docker daemon and docker-compose; prints one "ok ... # SKIP" line
# without them.  No registry is reachable here, so the images the compose
# file names are made locally first: ssmd:cpu from the Dockerfile
# (BuildKit), and stand-ins for nginx:1.22, haproxy:2.6 and
# redis:7.0-bookworm built from Debian's own packages on the local base (see
# container_e2e.sh).  Publishes :8080 and :8081 on the host while it runs;
# takes everything down at the end.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BASE=${DEBIAN_BASE:-ssmd-local/debian:bookworm-slim}
PROJECT=ssmde2e$$
DC=(docker-compose -p "$PROJECT" -f deploy/docker-compose.yml --profile haproxy)
n=0; failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
if ! $DOCKER info >/dev/null 2>&1 || ! command -v docker-compose >/dev/null; then
    echo "ok 1 - compose end-to-end # SKIP no docker daemon or docker-compose"
    exit 0
fi
if ss -ltn 2>/dev/null | grep -qE ':808[01] '; then
    echo "ok 1 - compose end-to-end # SKIP port 8080 or 8081 is taken on this host"
    exit 0
fi
work=$(mktemp -d /tmp/ssmd-compose-XXXXXX)
native_pid=""
cleanup() {
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1
    [ -n "$native_pid" ] && kill "$native_pid" 2>/dev/null && wait "$native_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# ---- images ----
$DOCKER image inspect "$BASE" >/dev/null 2>&1 ||
    { echo "# no $BASE: run deploy/tests/container_e2e.sh first (it makes the base)"; not_ok "base image"; exit 1; }
stand_in() { # stand_in TAG PACKAGE CMD-JSON [EXTRA-RUN]
    $DOCKER image inspect "$1" >/dev/null 2>&1 && return 0
    mkdir -p "$work/$2"
    printf 'FROM %s\nRUN apt-get update && apt-get install -y --no-install-recommends %s && rm -rf /var/lib/apt/lists/*%s\nCMD %s\n' \
        "$BASE" "$2" "${4:-}" "$3" >"$work/$2/Dockerfile"
    DOCKER_BUILDKIT=1 $DOCKER build --network host -t "$1" "$work/$2" >"$work/$2.log" 2>&1
}
stand_in nginx:1.22 nginx-light '["nginx", "-g", "daemon off;"]' &&
    stand_in haproxy:2.6 haproxy '["haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]' &&
    stand_in redis:7.0-bookworm redis-server '["redis-server"]' ' && mkdir -p /data' &&
    DOCKER_BUILDKIT=1 $DOCKER build --network host --build-arg DEBIAN_BASE="$BASE" --target cpu -t ssmd:cpu . \
        >"$work/ssmd.log" 2>&1
if [ $? = 0 ]; then ok "images: ssmd:cpu from the Dockerfile, nginx, HAProxy and redis stand-ins from Debian packages"
else not_ok "images"; tail -n 20 "$work"/*.log | sed 's/^/# /'; exit 1; fi

# ---- up ----
if ! "${DC[@]}" up -d --no-build >"$work/up.log" 2>&1; then
    not_ok "docker-compose up"; sed 's/^/# /' "$work/up.log"; exit 1
fi
up=0
for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ready)" = 200 ] && { up=1; break; }
    sleep 0.1
done
for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8081/ready)" = 200 ] || { up=0; sleep 0.1; continue; }
    up=$((up + 1)); break
done
if [ $up = 2 ]; then ok "docker-compose --profile haproxy up: redis, 3 replicas healthy, nginx and HAProxy answer /ready"
else not_ok "the stack did not become ready"; "${DC[@]}" ps | sed 's/^/# /'; exit 1; fi

# ---- the reference: the same four turns on the binary built here ----
port=$((20000 + RANDOM % 20000))
"$BUILD/ssmd" serve --model models/default --host 127.0.0.1 --port "$port" --threads 1 --quiet 2>"$work/native.log" &
native_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
prompts=("In the beginning" " and the LORD said" " unto Moses" " and Aaron")
turn() { # turn BASE ID K: prints the token ids of turn K of session ID
    curl -s -m 60 -H "X-Session-Id: $2" "$1/v1/completions" \
        -d "{\"prompt\":\"${prompts[$3]}\",\"max_tokens\":8,\"temperature\":0,\"session\":\"$2\"}" |
        sed -n 's/.*"tokens":\(\[[^]]*\]\).*/\1/p'
}
rid=$(printf '%032x' $RANDOM$RANDOM)
curl -s -o /dev/null -X POST -H "X-Session-Id: $rid" "http://127.0.0.1:$port/v1/sessions"
ref=()
for k in 0 1 2 3; do ref[k]=$(turn "http://127.0.0.1:$port" "$rid" $k); done

# Which replica served the last request of a session (nginx's log).
holder() {
    local ip
    # the last address of "upstream=A:8080, B:8080 0.012" answered
    ip=$("${DC[@]}" logs --no-color nginx 2>/dev/null | grep "sid=$1" | tail -1 |
        sed -n 's/.*upstream=\(.*\) [0-9.]*$/\1/p' | tr ',' '\n' | tail -1 | sed 's/ //g; s/:8080//')
    for s in ssmd1 ssmd2 ssmd3; do
        c=$("${DC[@]}" ps -q "$s")
        [ -n "$c" ] && [ "$($DOCKER inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")" = "$ip" ] &&
            { echo "$s"; return; }
    done
}
LB=http://127.0.0.1:8080
id=$(printf '%032x' $RANDOM$RANDOM$RANDOM)
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-Session-Id: $id" "$LB/v1/sessions")
got0=$(turn "$LB" "$id" 0)
h0=$(holder "$id")
if [ "$code" = 200 ] && [ -n "$got0" ] && [ "$got0" = "${ref[0]}" ] && [ -n "$h0" ]; then
    ok "a session made through nginx (X-Session-Id) is served by $h0, tokens = native"
else not_ok "first turn: create $code, tokens '$got0' want '${ref[0]}', holder '$h0'"; fi

# SIGTERM of the holder (docker-compose stop: drain, exit 0)
t0=$(date +%s%N)
"${DC[@]}" stop -t 35 "$h0" >/dev/null 2>&1
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
t0=$(date +%s%N)
got1=$(turn "$LB" "$id" 1)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
h1=$(holder "$id")
code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$("${DC[@]}" ps -q "$h0")")
if [ "$got1" = "${ref[1]}" ] && [ "$h1" != "$h0" ] && [ "$code" = 0 ]; then
    ok "docker-compose stop $h0 (drained and exited $code in ${stop_ms} ms): the next turn continues exactly on $h1 (${ms} ms)"
else not_ok "after stopping $h0 (exit $code): tokens '$got1' want '${ref[1]}' on '$h1'"; fi

# SIGKILL of the new holder
"${DC[@]}" kill -s SIGKILL "$h1" >/dev/null 2>&1
t0=$(date +%s%N)
got2=$(turn "$LB" "$id" 2)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
h2=$(holder "$id")
if [ "$got2" = "${ref[2]}" ] && [ -n "$h2" ] && [ "$h2" != "$h1" ]; then
    ok "docker-compose kill -s SIGKILL $h1: the next turn continues exactly on $h2 (${ms} ms)"
else not_ok "after killing $h1: tokens '$got2' want '${ref[2]}' on '$h2'"; fi

# The two come back (restart), the last one goes; the session still continues.
"${DC[@]}" start "$h0" "$h1" >/dev/null 2>&1
for _ in $(seq 1 300); do
    healthy=$($DOCKER inspect -f '{{.State.Health.Status}}' $("${DC[@]}" ps -q "$h0") $("${DC[@]}" ps -q "$h1") | grep -c healthy)
    [ "$healthy" = 2 ] && break
    sleep 0.2
done
"${DC[@]}" stop -t 35 "$h2" >/dev/null 2>&1
got3=$(turn "$LB" "$id" 3)
h3=$(holder "$id")
if [ "$got3" = "${ref[3]}" ] && [ -n "$h3" ] && [ "$h3" != "$h2" ]; then
    ok "$h0 and $h1 restarted, $h2 stopped: the fourth turn continues exactly on $h3"
else not_ok "fourth turn: tokens '$got3' want '${ref[3]}' on '$h3'"; fi

# Through HAProxy (profile haproxy, :8081): a fresh session while every
# replica in turn is stopped or killed before a turn, so whichever held it
# was taken away at least once; each turn equals the native one.
"${DC[@]}" start ssmd1 ssmd2 ssmd3 >/dev/null 2>&1
for _ in $(seq 1 300); do
    healthy=$($DOCKER inspect -f '{{.State.Health.Status}}' $("${DC[@]}" ps -q ssmd1 ssmd2 ssmd3) | grep -c healthy)
    [ "$healthy" = 3 ] && break
    sleep 0.2
done
HP=http://127.0.0.1:8081
hid=$(printf '%032x' $RANDOM$RANDOM$RANDOM$RANDOM)
curl -s -o /dev/null -X POST -H "X-Session-Id: $hid" "$HP/v1/sessions"
bad=""
for k in 0 1 2 3; do
    case $k in
    1) "${DC[@]}" stop -t 35 ssmd1 >/dev/null 2>&1 ;;
    2) "${DC[@]}" start ssmd1 >/dev/null 2>&1; "${DC[@]}" stop -t 35 ssmd2 >/dev/null 2>&1 ;;
    3) "${DC[@]}" start ssmd2 >/dev/null 2>&1; "${DC[@]}" kill -s SIGKILL ssmd3 >/dev/null 2>&1 ;;
    esac
    got=$(turn "$HP" "$hid" $k)
    [ -n "$got" ] && [ "$got" = "${ref[k]}" ] || bad="$bad turn $k: '$got' want '${ref[k]}';"
done
if [ -z "$bad" ]; then ok "HAProxy: a session continues exactly while ssmd1, ssmd2 (stopped) and ssmd3 (killed) go away in turn"
else not_ok "HAProxy:$bad"; fi

keys=$("${DC[@]}" exec -T redis redis-cli --scan --pattern 'ssmd:session:*' 2>/dev/null | wc -l)
if [ "$keys" -ge 1 ]; then ok "Redis holds the session states ($keys keys)"
else not_ok "no ssmd:session:* keys in Redis"; fi
echo "# $n checks, $failed failed"
[ $failed = 0 ]
