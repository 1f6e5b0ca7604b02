#!/usr/bin/env python3
"""json_schema_client.py - response_format json_schema end to end: 50 seeded
chat requests to a running `ssmd serve` on the default model, each held to
one schema whose instances are bounded (every string has a maxLength, every
array a maxItems; numbers and whitespace runs are bounded by ssmd), so each
answer must end with finish_reason "stop" well within max_tokens, parse, and
validate under jsonschema_rs (an independent validator, Rust's `jsonschema`).  Then one request per kind of schema
ssmd refuses must get a 400 naming the keyword.  Prints TAP lines.

Usage: json_schema_client.py BASE_URL
Test code only (make test's venv has jsonschema_rs, through schemathesis)."""
import json
import sys
import urllib.error
import urllib.request

import jsonschema_rs

base = sys.argv[1]
SCHEMA = {
    "type": "object",
    "properties": {
        "book": {"enum": ["Genesis", "Exodus", "Psalms", "John"]},
        "chapter": {"type": "integer"},
        "verse": {"type": "integer"},
        "text": {"type": "string", "maxLength": 60},
        "holy": {"type": "boolean"},
        "names": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
        "place": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                                   "river": {"type": "null"}},
                  "required": ["city"], "additionalProperties": False},
    },
    "required": ["book", "chapter", "text"],
    "additionalProperties": False,
}
n = 0
failed = 0


def tap(ok, what):
    global n, failed
    n += 1
    failed += not ok
    print("%s %d - %s" % ("ok" if ok else "not ok", n, what))
    sys.stdout.flush()


def post(body):
    req = urllib.request.Request(base + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


validator = jsonschema_rs.validator_for(SCHEMA)
stopped, bad = 0, []
for seed in range(50):
    status, r = post({"messages": [{"role": "user", "content": "Give a verse as JSON."}],
                      "max_tokens": 2000, "seed": seed, "temperature": 1.0,
                      "response_format": {"type": "json_schema",
                                          "json_schema": {"name": "verse", "schema": SCHEMA, "strict": True}}})
    if status != 200:
        bad.append("seed %d: HTTP %d %s" % (seed, status, r))
        continue
    choice = r["choices"][0]
    text = choice["message"]["content"]
    if choice["finish_reason"] != "stop":
        bad.append("seed %d: finish %s after %d tokens: %r" % (seed, choice["finish_reason"],
                                                                r["usage"]["completion_tokens"], text[-80:]))
        continue
    stopped += 1
    try:
        value = json.loads(text)
    except ValueError as e:
        bad.append("seed %d: does not parse (%s): %r" % (seed, e, text))
        continue
    if not validator.is_valid(value):
        bad.append("seed %d: invalid: %r" % (seed, text))
tap(not bad and stopped == 50, "50 seeds held to a schema: %d ended, all parse and validate%s"
    % (stopped, "" if not bad else "; " + "; ".join(bad[:3])))

for keyword, schema in [("pattern", {"type": "object", "properties": {"a": {"type": "string", "pattern": "x"}}}),
                        ("anyOf", {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}}),
                        ("additionalProperties", {"type": "object", "additionalProperties": True})]:
    status, r = post({"messages": [{"role": "user", "content": "x"}], "max_tokens": 1,
                      "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    msg = r.get("error", {}).get("message", "")
    tap(status == 400 and keyword in msg, "json_schema with %s: %d %r" % (keyword, status, msg))
sys.exit(1 if failed else 0)
