#!/usr/bin/env bash
# test_install.sh - the daemon as a newcomer meets it: `make install` into a
# DESTDIR, then `ssmd serve` without --model started from another
# directory finds its default model and answers; a lone binary with no
# model near it says where it looked; Ctrl-C twice during a stream stops
# the (sanitized) server at once, and the client still gets a complete
# stream (curl exit 0, ending with data: [DONE]).  Prints TAP lines.  Every
# wait is bounded.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
. tests/integration/lib.sh
root=$(pwd)
unset SSMD_MODEL # the lookup under test must not see the caller's

# ---- make install, then serve from elsewhere ----
if make -s --no-print-directory install BUILD="$BUILD" DESTDIR="$tmp/dest" PREFIX=/usr >"$tmp/install.log" 2>&1 &&
    [ -x "$tmp/dest/usr/bin/ssmd" ] && [ -f "$tmp/dest/usr/share/ssmd/models/default/config.json" ] &&
    [ -f "$tmp/dest/usr/share/doc/ssmd/README.md" ]; then
    ok "make install DESTDIR=... PREFIX=/usr: bin/ssmd, share/ssmd/models/default, share/doc/ssmd"
else
    not_ok "make install into a DESTDIR"
    sed 's/^/# /' "$tmp/install.log" | tail -10
fi

mkdir -p "$tmp/elsewhere"
cd "$tmp/elsewhere" || exit 1
if start_server "$tmp/dest/usr/bin/ssmd" --threads 1; then
    id=$(curl -s --max-time 10 "$url/v1/models" | grep -o '"id":"[^"]*"' | head -1)
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -d '{"prompt":"In the beginning","max_tokens":4}' \
        "$url/v1/completions")
    if [ "$id" = '"id":"default"' ] && [ "$code" = 200 ]; then
        ok "the installed ssmd, run from another directory without --model, serves its default model"
    else
        not_ok "the installed ssmd from another directory: model $id, completion $code"
        show_log
    fi
    kill -TERM "$pid"
    wait "$pid"
    pid=""
else
    not_ok "the installed ssmd did not start from another directory: $start_error"
    show_log
fi

# ---- a binary with no model near it says where it looked ----
cp "$tmp/dest/usr/bin/ssmd" "$tmp/elsewhere/ssmd"
timeout 20 "$tmp/elsewhere/ssmd" serve --port 1 >"$tmp/lonely.log" 2>&1
rc=$?
if [ "$rc" = 1 ] && grep -q "looked in $tmp/elsewhere/models/default, .*SSMD_MODEL" "$tmp/lonely.log"; then
    ok "no model anywhere: exit 1 and the places it looked"
else
    not_ok "no model anywhere: exit $rc, $(head -c 300 "$tmp/lonely.log")"
fi
SSMD_MODEL="$root/models/default" timeout 20 "$tmp/elsewhere/ssmd" generate --max-tokens 2 --prompt-ids 1 \
    --print-ids >"$tmp/gen.out" 2>&1
if [ $? = 0 ]; then
    ok "\$SSMD_MODEL names the default model when none is next to the binary"
else
    not_ok "SSMD_MODEL: $(head -c 300 "$tmp/gen.out")"
fi
cd "$root" || exit 1

# ---- Ctrl-C twice during a stream ----
if start_server "$BUILD/ssmd-san" --model models/default --threads 1; then
    curl -s -N --max-time 60 -o "$tmp/stream.txt" \
        -d '{"prompt":"In the beginning","max_tokens":4000,"ignore_eos":true,"stream":true}' \
        "$url/v1/completions" &
    cpid=$!
    for _ in $(seq 1 100); do [ -s "$tmp/stream.txt" ] && break; sleep 0.1; done
    t0=$(date +%s%N)
    kill -INT "$pid"
    sleep 0.2
    kill -INT "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    ms=$((($(date +%s%N) - t0) / 1000000))
    if kill -0 "$pid" 2>/dev/null; then
        not_ok "two Ctrl-C: the server still runs after 5 s"
        srv_rc=""
    else
        wait "$pid"
        srv_rc=$?
        pid=""
    fi
    wait "$cpid"
    crc=$?
    last=$(grep -v '^[[:space:]]*$' "$tmp/stream.txt" | tail -1)
    if [ "$srv_rc" = 0 ] && [ "$crc" = 0 ] && [ "$last" = "data: [DONE]" ] && [ "$ms" -lt 3000 ]; then
        ok "two Ctrl-C during a stream: stopped in $ms ms (exit 0), the client got a complete stream (curl exit 0, data: [DONE])"
    else
        not_ok "two Ctrl-C during a stream: server exit ${srv_rc:-none} after $ms ms, curl exit $crc, last line '$last'"
        show_log
    fi
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$tmp/server.log"; then
        not_ok "sanitizer report after two Ctrl-C"
        show_log 40
    else
        ok "no sanitizer report after two Ctrl-C"
    fi
else
    not_ok "ssmd-san did not start: $start_error"
fi
exit $failed
