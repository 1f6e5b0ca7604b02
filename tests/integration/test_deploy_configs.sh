#!/usr/bin/env bash
# test_deploy_configs.sh - checks the Dockerfile and deploy/ with the real
# tools that are installed here (no docker daemon is needed or used):
#   - Dockerfile structure (stages, non-root user, tini, HEALTHCHECK, the
#     CUDA target), and that the CPU image's apt list holds the package of
#     every library the binary needs (readelf + dpkg -S on this build);
#   - the image's ENTRYPOINT + CMD run for real (tini, the baked-in default
#     model): HEALTHCHECK command succeeds, SIGTERM through tini exits 0;
#   - nginx -t and haproxy -c on the shipped configs;
#   - compose and Kubernetes YAML parsed (python3-yaml) with structural
#     checks: probe paths/ports against the server's flags, preStop +
#     --drain-timeout against terminationGracePeriodSeconds and
#     stop_grace_period, labels/selectors, GPU resources, the Redis store
#     wiring; kubectl kustomize.
# The live test of the balancer configs in front of three replicas and
# Redis (affinity, failover, drain) is tests/integration/test_deploy.sh.
# Each check whose tool is missing prints "ok N # SKIP ...".  Prints TAP
# "ok N"/"not ok N" lines.  Never builds anything, talks only to 127.0.0.1,
# and stops every process it started (trap).  Runs in ~5 s.
set -u
PATH=$PATH:/usr/sbin:/sbin # nginx and haproxy live there
cd "$(dirname "$0")/../.." || exit 1
BIN=${BUILD:-build}/ssmd
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=$(command -v python3 || true)
n=0
failed=0
pids=()
tmp=$(mktemp -d /tmp/ssmd-deploy-XXXXXX)

ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; failed=1; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
check() { # check DESCRIPTION COMMAND...: ok when COMMAND succeeds
    local d=$1; shift
    if "$@" >"$tmp/check.out" 2>&1; then ok "$d"; else
        not_ok "$d"; sed 's/^/# /' "$tmp/check.out" | tail -15; fi
}
stop_pid() { # TERM, then KILL after 5 s
    local p=$1
    kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}
cleanup() {
    for p in "${pids[@]}"; do stop_pid "$p"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
have() { command -v "$1" >/dev/null 2>&1; }
port_in_use() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
# A port below the kernel's ephemeral range (outgoing connections use those).
eph_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
[ "${eph_low:-0}" -gt 12000 ] 2>/dev/null || eph_low=32768
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((10000 + (RANDOM * 32768 + RANDOM) % (eph_low - 10000)))
        port_in_use "$p" || { echo "$p"; return 0; }
    done
    return 1
}
CURL=(curl -s --noproxy '*' --max-time 20)
wait_200() { # wait_200 URL PID: until URL answers 200 (20 s), PID alive
    for _ in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.1
    done
    return 1
}
# launch PATH LOG FUNC: runs "FUNC PORT" (which execs a server) in the
# background on a free port until PATH answers 200 there; 3 tries, for a
# port taken meanwhile.  Sets lport and lpid; returns 1 if all failed.
launch() {
    local path=$1 log=$2 fn=$3
    for _ in 1 2 3; do
        lport=$(free_port) || return 1
        "$fn" "$lport" >"$log" 2>&1 &
        lpid=$!
        pids+=("$lpid")
        wait_200 "http://127.0.0.1:$lport$path" "$lpid" && return 0
        stop_pid "$lpid"
    done
    return 1
}

# ---- Dockerfile ---------------------------------------------------------
# The stage (FROM ... AS name) -> its lines, joined over continuations.
stage() {
    sed -e ':a' -e '/\\$/N; s/\\\n//; ta' Dockerfile |
        awk -v s="$1" '/^FROM /{cur=$NF} cur==s' | grep -v '^[[:space:]]*#'
}
dockerfile_structure() {
    local last err=0
    last=$(grep '^FROM ' Dockerfile | tail -1 | awk '{print $NF}')
    [ "$last" = cpu ] || { echo "last stage is '$last', want cpu (the default target)"; err=1; }
    grep -q '^ARG DEBIAN_BASE=debian:bookworm-slim$' Dockerfile || { echo "no bookworm-slim base"; err=1; }
    stage build | grep -q '^FROM \${DEBIAN_BASE} AS build$' || { echo "build stage not on DEBIAN_BASE"; err=1; }
    stage cpu | grep -q '^FROM \${DEBIAN_BASE} AS cpu$' || { echo "cpu stage not on DEBIAN_BASE"; err=1; }
    stage build-cuda | grep -q '^FROM nvidia/cuda:.*-devel-' || { echo "build-cuda is not on nvidia/cuda devel"; err=1; }
    stage build-cuda | grep -q 'make .* cuda' || { echo "build-cuda does not run make cuda"; err=1; }
    stage cuda | grep -q '^FROM nvidia/cuda:.*-runtime-' || { echo "cuda is not on nvidia/cuda runtime"; err=1; }
    stage cuda | grep -q -- '"--backend", "cuda"' || { echo "cuda image does not run --backend cuda"; err=1; }
    stage build | grep -q 'make .*/out/ssmd' || { echo "build stage does not make /out/ssmd"; err=1; }
    for s in cpu cuda; do
        local from=build; [ $s = cuda ] && from=build-cuda
        local body; body=$(stage $s)
        grep -q "^COPY --from=$from /out/ssmd /usr/local/bin/ssmd$" <<<"$body" || { echo "$s: binary not copied from $from"; err=1; }
        grep -q '^COPY models/default /opt/ssmd/models/default$' <<<"$body" || { echo "$s: default model not copied"; err=1; }
        grep -Eq '^USER [1-9][0-9]*(:[0-9]+)?$' <<<"$body" || { echo "$s: no numeric non-root USER"; err=1; }
        grep -q '^HEALTHCHECK .*/health' <<<"$body" || { echo "$s: no HEALTHCHECK on /health"; err=1; }
        grep -q '^ENTRYPOINT \["/usr/bin/tini", "--", "/usr/local/bin/ssmd", "serve", ' <<<"$body" || { echo "$s: ENTRYPOINT is not tini -- ssmd serve"; err=1; }
        grep -q '"--port", "8080"' <<<"$body" || { echo "$s: not on port 8080"; err=1; }
        grep -q 'apt-get install.* tini' <<<"$body" || { echo "$s: tini not installed"; err=1; }
        # Only runtime packages in the final stages.
        if grep 'apt-get install' <<<"$body" | grep -Eq -- '-dev\b|build-essential|pkg-config|gcc|make'; then
            echo "$s: build packages in a runtime stage"; err=1
        fi
    done
    grep -iq -- '--api-key' <(grep -v '^#' Dockerfile) && { echo "an API key in the Dockerfile"; err=1; }
    return $err
}
check "Dockerfile: bookworm-slim stages, CUDA target (make cuda), non-root, tini, HEALTHCHECK, runtime-only final stages" dockerfile_structure

dockerignore_ok() {
    local err=0
    for p in build .git; do grep -qx "$p" .dockerignore || { echo ".dockerignore lacks $p"; err=1; }; done
    for p in models engine server kernels Makefile; do
        grep -Eqx "$p(/.*)?" .dockerignore && { echo ".dockerignore drops $p (the build needs it)"; err=1; }
    done
    return $err
}
check ".dockerignore drops build outputs and .git, keeps sources, Makefile and models" dockerignore_ok

# Every library the binary needs comes from a package the cpu stage installs
# (or from the base image's essential set).
runtime_libs() {
    local pkgs need lib path pkg err=0
    pkgs=$(stage cpu | grep 'apt-get install' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$')
    need=$(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    [ -n "$need" ] || { echo "readelf found no NEEDED entries in $BIN"; return 1; }
    for lib in $need; do
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|x86_64|AArch64/ {print $NF; exit}')
        [ -n "$path" ] || { echo "$lib: not found by ldconfig"; err=1; continue; }
        path=$(readlink -f "$path")
        pkg=$(dpkg -S "$path" 2>/dev/null || dpkg -S "${path#/usr}" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null)
        pkg=${pkg%%:*}
        case "$pkg" in
        libc6 | libgcc-s1) echo "$lib: $pkg (in the base image)" ;;
        "") echo "$lib ($path): no package owns it"; err=1 ;;
        *) if grep -qx "$pkg" <<<"$pkgs"; then echo "$lib: $pkg"; else
            echo "$lib: package $pkg is not installed by the cpu stage"; err=1; fi ;;
        esac
    done
    return $err
}
if [ ! -x "$BIN" ]; then
    not_ok "$BIN is not built (run make first)"
elif have readelf && have dpkg && have ldconfig; then
    check "cpu stage installs the package of every library $BIN needs" runtime_libs
else
    skip "readelf, dpkg or ldconfig missing"
fi

# The image's ENTRYPOINT + CMD, run here: image paths mapped to this tree,
# 0.0.0.0:8080 to 127.0.0.1:PORT.
entry_args() {
    local line
    line=$(stage cpu | grep -E "^$1 \[" | sed -E "s/^$1 \[(.*)\]$/\1/")
    "$PY" -c 'import json,sys; print("\n".join(json.loads("[" + sys.argv[1] + "]")))' "$line"
}
if ! have tini; then
    skip "tini is not installed (the image's ENTRYPOINT and HEALTHCHECK not run)"
elif [ -z "$PY" ] || ! have curl || [ ! -x "$BIN" ]; then
    skip "python3, curl or $BIN missing"
else
    mapfile -t argv < <(entry_args ENTRYPOINT; entry_args CMD)
    run_entry() {
        local run=() a
        for a in "${argv[@]}"; do
            case "$a" in
            /usr/bin/tini) run+=("$(command -v tini)") ;;
            /usr/local/bin/ssmd) run+=("$BIN") ;;
            /opt/ssmd/models/default) run+=(models/default) ;;
            0.0.0.0) run+=(127.0.0.1) ;;
            8080) run+=("$1") ;;
            *) run+=("$a") ;;
            esac
        done
        exec "${run[@]}" --threads 1
    }
    if launch /ready "$tmp/tini.log" run_entry; then
        tpid=$lpid
        hc=$(stage cpu | grep '^HEALTHCHECK' | sed -E 's/.*CMD \["bash", "-c", "(.*)"\]$/\1/; s/\\\\/\\/g' | sed "s|/8080|/$lport|")
        if bash -c "$hc" 2>/dev/null; then ok "image ENTRYPOINT (tini -- ssmd serve, default model) is ready; HEALTHCHECK passes"
        else not_ok "HEALTHCHECK command fails against a live server: $hc"; fi
        kill -TERM "$tpid"
        rc=""
        for _ in $(seq 1 200); do kill -0 "$tpid" 2>/dev/null || { wait "$tpid"; rc=$?; break; }; sleep 0.1; done
        if [ "$rc" = 0 ]; then ok "SIGTERM to tini reaches ssmd: drained and exited 0"
        else not_ok "SIGTERM to tini: exit status '${rc:-still running after 20 s}'"; sed 's/^/# /' "$tmp/tini.log" | tail -10; fi
        if bash -c "$hc" 2>/dev/null; then not_ok "HEALTHCHECK passes with no server"; else ok "HEALTHCHECK fails with no server"; fi
    else
        not_ok "image ENTRYPOINT did not become ready: ${argv[*]}"
        sed 's/^/# /' "$tmp/tini.log" | tail -10
    fi
fi

# ---- balancer configs, checked as shipped ----------------------------------
# nginx.conf with its upstream lines replaced by $1 (one "host:port" per line)
# and its listen line by $2.
nginx_conf() {
    awk -v servers="$1" -v listen="$2" '
        /^[[:space:]]*server ssmd[0-9]+:8080/ {
            if (!done) { n = split(servers, s, "\n"); for (i = 1; i <= n; i++) { l = $0; sub(/ssmd[0-9]+:8080/, s[i], l); print l }; done = 1 }
            next }
        /^[[:space:]]*listen 8080;/ { print "        listen " listen ";"; next }
        { print }' deploy/nginx/nginx.conf
}
mkdir -p "$tmp/nginx"
if have nginx; then
    nginx_conf $'127.0.0.1:1\n127.0.0.1:2\n127.0.0.1:3' 127.0.0.1:1 >"$tmp/nginx/t.conf"
    check "nginx -t accepts deploy/nginx/nginx.conf (upstreams on loopback)" \
        nginx -t -e stderr -p "$tmp/nginx" -c "$tmp/nginx/t.conf" -g "pid $tmp/nginx/t.pid;"
else
    skip "nginx is not installed"
fi
if have haproxy; then
    check "haproxy -c accepts deploy/haproxy/haproxy.cfg as shipped" haproxy -c -q -f deploy/haproxy/haproxy.cfg
else
    skip "haproxy is not installed"
fi

# ---- compose and Kubernetes ------------------------------------------------
if [ -n "$PY" ] && "$PY" -c 'import yaml' 2>/dev/null; then
    "$PY" deploy/tests/check_yaml.py >"$tmp/yaml.out" 2>&1
    if ! grep -q '^\(PASS\|FAIL\)' "$tmp/yaml.out"; then
        not_ok "YAML checks did not run"; sed 's/^/# /' "$tmp/yaml.out" | tail -15
    fi
    while IFS= read -r line; do
        case "$line" in
        PASS\ *) ok "${line#PASS }" ;;
        FAIL\ *) not_ok "${line#FAIL }" ;;
        esac
    done <"$tmp/yaml.out"
else
    skip "python3-yaml is not installed (compose and k8s YAML not checked)"
fi
# Every ssmd flag the Dockerfile, compose and the k8s manifests pass exists
# in this build's `ssmd serve --help` (a renamed flag would stop every pod).
known_flags() {
    local used f err=0 help
    help=$("$BIN" serve --help 2>&1)
    # command:/args: lists (over several lines) that are ssmd flags, i.e.
    # start with "--" (not redis-server's).
    used=$({ stage cpu; stage cuda
        awk '/^[[:space:]]*(command|args): \[/ { l = ""; on = 1 } on { l = l $0 } on && /\]/ { on = 0; if (l ~ /: \["--/) print l }' \
            deploy/docker-compose.yml deploy/k8s/deployment*.yaml; } | grep -o -- '"--[a-z][a-z-]*"' | tr -d '"' | sort -u)
    [ -n "$used" ] || { echo "no flags found"; return 1; }
    for f in $used; do
        grep -q -- "^  $f " <<<"$help" || { echo "$f is not an ssmd serve flag"; err=1; }
    done
    echo "flags:" $used
    return $err
}
if [ -x "$BIN" ]; then
    check "every flag in the Dockerfile, compose and k8s args is an ssmd serve flag of this build" known_flags
else
    skip "$BIN is not built"
fi
if have kubectl; then
    check "kubectl kustomize deploy/k8s builds (offline)" kubectl kustomize deploy/k8s
else
    skip "kubectl is not installed"
fi

exit $failed
