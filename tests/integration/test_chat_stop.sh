#!/usr/bin/env bash
# test_chat_stop.sh - chat with the model that ships in models/default ends
# its turn by itself.  models/train trains it on KJV dialogues that end every
# turn with the end-of-turn token <|end|> (its eos token), so a greedy reply
# to a dialogue-shaped question must stop there: finish_reason "stop" well
# before max_tokens, content with letters and without "<|end|>" or any other
# "<|...|>" marker of the template.  Checked for a question by reference, a
# question by the start of a verse, a second turn after an answer, and a
# streamed reply (its last chunk says "stop").  A model that never ends a
# turn (the KJV-only model before the dialogues) fails every check.
#
# Starts `ssmd serve` on a free loopback port (always killed); never builds
# anything (make test has built ${BUILD:-build}/ssmd); needs curl and
# python3 (for reading the JSON).  CHAT_MODEL=DIR tries another model.
set -u
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/ssmd
MODEL=${CHAT_MODEL:-models/default}
MAX_TOKENS=256
LIMIT=160 # "well before max_tokens": no KJV verse is longer than ~120 tokens
. tests/integration/lib.sh

if [ ! -f "$MODEL/config.json" ] || [ ! -f "$MODEL/model.safetensors" ]; then
    echo "ok 1 - # SKIP no $MODEL"
    exit 0
fi
if [ ! -x "$BIN" ]; then
    echo "not ok 1 - $BIN is not built (run make first)"
    exit 1
fi
PY=$(command -v python3 || true)
if ! command -v curl >/dev/null || [ -z "$PY" ]; then
    echo "ok 1 - # SKIP needs curl and python3"
    exit 0
fi

if start_server "$BIN" --model "$MODEL" --threads 1; then
    ok "serve --model $MODEL answers /ready with 200 (port $port)"
else
    not_ok "serve --model $MODEL ${start_error:-found no free port}"
    show_log
    exit 1
fi

# chat NAME MESSAGES_JSON: one greedy chat completion; one TAP line.
chat() {
    local name=$1 body code verdict
    body="{\"messages\":$2,\"max_tokens\":$MAX_TOKENS,\"temperature\":0}"
    code=$(curl -s -o "$tmp/chat.json" -w '%{http_code}' --max-time 60 \
        -H 'Content-Type: application/json' -d "$body" "$url/v1/chat/completions")
    verdict=$("$PY" - "$tmp/chat.json" "$code" "$LIMIT" <<'EOF'
import json, re, sys
path, code, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    r = json.load(open(path))
    c = r["choices"][0]
    text, why, n = c["message"]["content"], c["finish_reason"], r["usage"]["completion_tokens"]
except Exception as e:
    print("BAD status %s, unreadable reply (%s): %s" % (code, e, open(path).read()[:300]))
    sys.exit()
problems = []
if code != "200":
    problems.append("status " + code)
if why != "stop":
    problems.append("finish_reason %r" % why)
if n >= limit:
    problems.append("%d tokens (limit %d)" % (n, limit))
if "<|end|>" in text or re.search(r"<\|[a-z]+\|>", text):
    problems.append("a template marker in the content")
if not re.search("[A-Za-z]{3}", text):
    problems.append("no words")
print(("BAD " + ", ".join(problems) + ":" if problems else "OK") + " %s after %d tokens: %s"
      % (why, n, json.dumps(text if len(text) <= 300 else text[:300] + "...")))
EOF
)
    case $verdict in
    OK*) ok "$name: ${verdict#OK }" ;;
    *) not_ok "$name: ${verdict#BAD }" ;;
    esac
}

chat "question by reference" '[{"role":"user","content":"What does Genesis 1:3 say?"}]'
chat "question by the start of a verse" \
    '[{"role":"user","content":"Finish this verse: And the LORD spake unto Moses"}]'
chat "second turn" '[{"role":"user","content":"Quote John 3:16."},
    {"role":"assistant","content":"For God so loved the world, that he gave his only begotten Son, that whosoever believeth in him should not perish, but have everlasting life."},
    {"role":"user","content":"And the next verse?"}]'

# a streamed reply: SSE chunks, the last one with finish_reason "stop"
body="{\"messages\":[{\"role\":\"user\",\"content\":\"What is written in Psalms chapter 23, verse 1?\"}],\"max_tokens\":$MAX_TOKENS,\"temperature\":0,\"stream\":true}"
code=$(curl -s -N -o "$tmp/stream.txt" -w '%{http_code}' --max-time 60 \
    -H 'Content-Type: application/json' -d "$body" "$url/v1/chat/completions")
verdict=$("$PY" - "$tmp/stream.txt" "$code" "$LIMIT" <<'EOF'
import json, sys
path, code, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [l.strip() for l in open(path) if l.strip()]
chunks, text, why = 0, "", None
try:
    for l in lines:
        if l == "data: [DONE]":
            continue
        c = json.loads(l[len("data: "):])["choices"][0]
        chunks += 1
        text += c.get("delta", {}).get("content") or ""
        why = c.get("finish_reason") or why
except Exception as e:
    print("BAD status %s, unreadable stream (%s): %s" % (code, e, open(path).read()[:300]))
    sys.exit()
ok = code == "200" and why == "stop" and lines and lines[-1] == "data: [DONE]" \
    and "<|" not in text and chunks < limit
print(("OK" if ok else "BAD status %s," % code) + " %d chunks, finish_reason %r: %s"
      % (chunks, why, json.dumps(text if len(text) <= 300 else text[:300] + "...")))
EOF
)
case $verdict in
OK*) ok "streamed: ${verdict#OK }" ;;
*) not_ok "streamed: ${verdict#BAD }" ;;
esac
exit $failed
