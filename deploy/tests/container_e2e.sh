#!/usr/bin/env bash
# container_e2e.sh - builds the CPU image from the Dockerfile and runs the
# end-to-end checks against the container (`make test-container`).
#
# Needs a running docker daemon; prints one "ok ... # SKIP" line without one.
# Image registries cannot be reached from these machines, so the Debian base
# is made locally (debootstrap bookworm minbase + docker import) unless
# DEBIAN_BASE names an image the daemon already has.  The container runs
# with host networking on 127.0.0.1:8080 (the image's own port, so its
# HEALTHCHECK is the real one).  Everything it starts, it removes.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
BASE=${DEBIAN_BASE:-ssmd-local/debian:bookworm-slim}
IMAGE=${IMAGE:-ssmd:cpu-e2e}
NAME=ssmd-e2e-$$
n=0; failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }

# The Debian client drives the daemon's built-in BuildKit without the buildx
# plugin (a newer client without buildx would fall back to the legacy
# builder, which builds the CUDA stages too).
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
if ! $DOCKER info >/dev/null 2>&1; then
    echo "ok 1 - container end-to-end # SKIP no docker daemon"
    exit 0
fi
if ss -ltn 2>/dev/null | grep -q '127.0.0.1:8080 \|0.0.0.0:8080 \|\*:8080 '; then
    echo "ok 1 - container end-to-end # SKIP port 8080 is taken on this host"
    exit 0
fi
work=$(mktemp -d /tmp/ssmd-container-XXXXXX)
native_pid=""
cleanup() {
    $DOCKER rm -f "$NAME" >/dev/null 2>&1
    $DOCKER image rm "$IMAGE" >/dev/null 2>&1
    [ -n "$native_pid" ] && kill "$native_pid" 2>/dev/null && wait "$native_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

if ! $DOCKER image inspect "$BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { not_ok "base image: no $BASE and no debootstrap"; exit 1; }
    echo "# making $BASE with debootstrap (a few minutes)"
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 &&
        cp /etc/apt/sources.list.d/debian.sources "$work/rootfs/etc/apt/sources.list.d/" 2>/dev/null;
    tar -C "$work/rootfs" -c . | $DOCKER import - "$BASE" >/dev/null || { not_ok "base image import"; exit 1; }
    rm -rf "$work/rootfs"
fi

t0=$(date +%s)
if DOCKER_BUILDKIT=1 $DOCKER build --network host --build-arg DEBIAN_BASE="$BASE" --target cpu -t "$IMAGE" . \
        >"$work/build.log" 2>&1; then
    ok "image builds (target cpu, $(( $(date +%s) - t0 )) s)"
else
    not_ok "image builds"; tail -n 30 "$work/build.log" | sed 's/^/# /'; exit 1
fi
size=$($DOCKER image inspect -f '{{.Size}}' "$IMAGE")
echo "# image size $((size / 1000000)) MB (base $(( $($DOCKER image inspect -f '{{.Size}}' "$BASE") / 1000000 )) MB)"
check "final stage has no compiler" bash -c "! $DOCKER run --rm --entrypoint /bin/sh $IMAGE -c 'command -v gcc || command -v cc' >/dev/null"
check "runs as the non-root user 10001" test "$($DOCKER run --rm --entrypoint id "$IMAGE" -u)" = 10001

# The image's own ENTRYPOINT and CMD, host network, 127.0.0.1 only.
$DOCKER run -d --network host --name "$NAME" "$IMAGE" --host 127.0.0.1 --port 8080 --threads 1 >/dev/null
ready=0
for _ in $(seq 1 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/ready)" = 200 ] && { ready=1; break; }
    sleep 0.1
done
check "container becomes ready" test $ready = 1
pid1=$($DOCKER exec "$NAME" cat /proc/1/cmdline | tr '\0' ' ')
check "PID 1 is tini ($pid1), ssmd its child" bash -c "[[ '$pid1' == /usr/bin/tini* ]] && $DOCKER top $NAME -o pid,ppid,args | grep -q '/usr/local/bin/ssmd serve'"

# Same greedy text as the binary built here.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18611)
"$BUILD/ssmd" serve --model models/default --host 127.0.0.1 --port "$port" --threads 1 --quiet 2>"$work/native.log" &
native_pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
req='{"prompt":"In the beginning God","max_tokens":12,"temperature":0}'
in_box=$(curl -s -m 30 http://127.0.0.1:8080/v1/completions -d "$req" | sed -n 's/.*"tokens":\(\[[^]]*\]\).*/\1/p')
native=$(curl -s -m 30 "http://127.0.0.1:$port/v1/completions" -d "$req" | sed -n 's/.*"tokens":\(\[[^]]*\]\).*/\1/p')
check "greedy tokens in the container = native ($in_box)" test -n "$in_box" -a "$in_box" = "$native"

# HEALTHCHECK: healthy within its first interval (10 s) plus slack.
health=""
for _ in $(seq 1 40); do
    health=$($DOCKER inspect -f '{{.State.Health.Status}}' "$NAME")
    [ "$health" = healthy ] && break
    sleep 1
done
check "HEALTHCHECK reports healthy" test "$health" = healthy

# SIGTERM reaches ssmd through tini: a running stream finishes, exit 0.
curl -sN -m 60 http://127.0.0.1:8080/v1/completions \
    -d '{"prompt":"And","max_tokens":400,"temperature":0,"ignore_eos":true,"stream":true}' >"$work/stream.txt" &
curl_pid=$!
sleep 0.3
t0=$(date +%s%N)
$DOCKER stop -t 30 "$NAME" >/dev/null
stop_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait $curl_pid
code=$($DOCKER inspect -f '{{.State.ExitCode}}' "$NAME")
check "docker stop: exit code 0 after draining (${stop_ms} ms)" test "$code" = 0
check "the running stream was finished, not cut" grep -q 'data: \[DONE\]' "$work/stream.txt"
check "the log shows the drain" bash -c "$DOCKER logs $NAME 2>&1 | grep -q draining && $DOCKER logs $NAME 2>&1 | grep -q stopped"
echo "# $n checks, $failed failed"
[ $failed = 0 ]
