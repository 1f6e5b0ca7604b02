#!/usr/bin/env python3
"""openai_client.py - the official `openai` Python package against a running
`ssmd serve` (started by test_openai_client.sh with --api-key): completions
and chat, streamed and not, must come back as the client's parsed objects
with usage and finish_reason, and our errors must surface as the client's
own exception classes with our status codes.  Prints TAP "ok N - ..." lines.

Usage: openai_client.py BASE_URL API_KEY
Test code only, run with make test's venv python ($TEST_PYTHON); never
needed by the server (the shell script skips when the package is missing)."""
import json
import sys
import traceback

import openai

base, key = sys.argv[1], sys.argv[2]
n = 0
failed = 0


def check(name, fn):
    global n, failed
    n += 1
    try:
        detail = fn()
        print("ok %d - %s%s" % (n, name, (": " + detail) if detail else ""))
    except Exception as e:  # any failure, assertion or client error
        failed += 1
        print("not ok %d - %s: %s: %s" % (n, name, type(e).__name__, e))
        for line in traceback.format_exc().splitlines()[-6:]:
            print("# " + line)
    sys.stdout.flush()


client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=60)
model = None


def t_models():
    global model
    ms = client.models.list()
    ids = [m.id for m in ms.data]
    assert ids, "no models listed"
    model = ids[0]
    return "model %r" % model


def t_completion():
    r = client.completions.create(model=model, prompt="Hello", max_tokens=5, temperature=0)
    assert r.object == "text_completion", r.object
    assert len(r.choices) == 1 and isinstance(r.choices[0].text, str)
    c = r.choices[0]
    assert c.finish_reason in ("stop", "length"), c.finish_reason
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 5, u
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens, u
    if c.finish_reason == "length":
        assert u.completion_tokens == 5, u
    return "%d+%d tokens, finish %s, text %r" % (u.prompt_tokens, u.completion_tokens, c.finish_reason, c.text)


def t_completion_ids_logprobs():
    r = client.completions.create(model=model, prompt=[1, 2, 3], max_tokens=3, temperature=0, logprobs=2,
                                  extra_body={"ignore_eos": True})
    c = r.choices[0]
    assert c.finish_reason == "length", c.finish_reason
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 3, r.usage
    lp = c.logprobs
    assert lp is not None and len(lp.tokens) == 3 and len(lp.token_logprobs) == 3, lp
    assert all(x <= 0 for x in lp.token_logprobs), lp.token_logprobs
    return "logprobs %s" % [round(x, 3) for x in lp.token_logprobs]


def t_completion_stream():
    text, finishes, usage, chunks = "", [], None, 0
    with client.completions.create(model=model, prompt="Once", max_tokens=6, temperature=0, stream=True,
                                   stream_options={"include_usage": True}, extra_body={"ignore_eos": True}) as s:
        for ch in s:
            chunks += 1
            assert ch.object == "text_completion", ch.object
            if ch.usage is not None:
                usage = ch.usage
            for c in ch.choices:
                text += c.text
                if c.finish_reason:
                    finishes.append(c.finish_reason)
    assert finishes == ["length"], finishes
    assert usage is not None and usage.completion_tokens == 6, usage
    ref = client.completions.create(model=model, prompt="Once", max_tokens=6, temperature=0,
                                    extra_body={"ignore_eos": True})
    assert text == ref.choices[0].text, (text, ref.choices[0].text)
    return "%d chunks, text %r equals the non-streamed one" % (chunks, text)


def t_chat():
    r = client.chat.completions.create(model=model, messages=[{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": "Hi"}],
                                       max_tokens=4, temperature=0)
    assert r.object == "chat.completion", r.object
    m = r.choices[0].message
    assert m.role == "assistant" and isinstance(m.content, str), m
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 4 and r.usage.prompt_tokens > 0, r.usage
    return "finish %s, content %r" % (r.choices[0].finish_reason, m.content)


def t_chat_stream():
    roles, text, finishes, usage = [], "", [], None
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=5, temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True})
    for ch in stream:
        assert ch.object == "chat.completion.chunk", ch.object
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            if c.delta.role:
                roles.append(c.delta.role)
            text += c.delta.content or ""
            if c.finish_reason:
                finishes.append(c.finish_reason)
    assert roles[:1] == ["assistant"], roles
    assert finishes == ["length"], finishes
    assert usage is not None and usage.completion_tokens == 5, usage
    return "text %r" % text


def expect(exc, status, fn):
    try:
        fn()
    except exc as e:
        assert e.status_code == status, (e.status_code, status)
        body = e.body if isinstance(e.body, dict) else {}
        msg = body.get("message") if body else None
        return "%s %d: %s" % (exc.__name__, e.status_code, msg or e)
    raise AssertionError("no %s raised" % exc.__name__)


def t_seed():
    # without a seed: drawn per request and reported; sent back, it reproduces
    kw = dict(model=model, prompt="In the beginning", max_tokens=12, extra_body={"ignore_eos": True})
    rs = [client.completions.create(**kw) for _ in range(3)]
    seeds = [r.model_extra["seed"] for r in rs]
    assert len(set(seeds)) == 3, seeds
    texts = [r.choices[0].text for r in rs]
    assert len(set(texts)) > 1, texts
    again = client.completions.create(seed=seeds[0], **kw)
    assert again.choices[0].text == texts[0], (again.choices[0].text, texts[0])
    return "seeds %s; seed %d reproduces %r" % (seeds, seeds[0], texts[0])


def t_penalties_bias():
    # accepted and honoured: a -100 bias bans the greedy first token
    kw = dict(model=model, prompt="And God said", max_tokens=6, temperature=0, extra_body={"ignore_eos": True})
    plain = client.completions.create(**kw).choices[0].model_extra["tokens"]
    banned = client.completions.create(logit_bias={str(plain[0]): -100}, presence_penalty=0.5,
                                       frequency_penalty=0.5, **kw).choices[0].model_extra["tokens"]
    assert plain[0] not in banned, (plain, banned)
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
                                       presence_penalty=1.0, frequency_penalty=-1.0, logit_bias={"5": 2}, seed=3,
                                       user="someone", n=1, store=False, tool_choice="none",
                                       response_format={"type": "text"})
    assert r.choices[0].message.content is not None
    return "greedy %s, with token %d banned %s" % (plain, plain[0], banned)


def t_model_retrieve():
    m = client.models.retrieve(model)
    assert m.id == model, m
    return expect(openai.NotFoundError, 404, lambda: client.models.retrieve("no-such-model"))


def t_err_404_model():
    def call():
        client.completions.create(model="gpt-4o-mini", prompt="x", max_tokens=1)
    try:
        call()
    except openai.NotFoundError as e:
        assert e.code == "model_not_found", e.code
        return "404 %s: %s" % (e.code, e.body.get("message") if isinstance(e.body, dict) else e)
    raise AssertionError("no 404")


def refused(fn):
    return expect(openai.BadRequestError, 400, fn)


def t_n_and_prompt_list():
    r = client.completions.create(model=model, prompt=["In the", "And God"], max_tokens=3, n=2, seed=5)
    assert len(r.choices) == 4 and sorted(c.index for c in r.choices) == [0, 1, 2, 3], r.choices
    one = client.completions.create(model=model, prompt="And God", max_tokens=3, seed=5 + 3)
    assert one.choices[0].text == [c for c in r.choices if c.index == 3][0].text, (one, r)
    return "4 choices; choice 3 = prompt 1 alone with seed + 3"


def t_json_schema():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "ok": {"type": "boolean"}},
              "required": ["n", "ok"], "additionalProperties": False}
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "JSON"}], max_tokens=200,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x", "schema": schema}})
    c = r.choices[0]
    assert c.finish_reason == "stop", c
    v = json.loads(c.message.content)
    assert set(v) == {"n", "ok"} and isinstance(v["n"], int) and isinstance(v["ok"], bool), v
    return "content %r" % c.message.content.strip()


def t_refused():
    chat = dict(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
    out = []
    for name, fn in [
            ("best_of", lambda: client.completions.create(model=model, prompt="x", max_tokens=1, best_of=2)),
            ("suffix", lambda: client.completions.create(model=model, prompt="x", max_tokens=1, suffix="end")),
            ("n above --max-batch", lambda: client.completions.create(model=model, prompt="x", max_tokens=1, n=100000)),
            ("129 prompts", lambda: client.completions.create(model=model, prompt=["a"] * 129, max_tokens=1)),
            ("presence_penalty", lambda: client.completions.create(model=model, prompt="x", presence_penalty="abc")),
            ("logit_bias", lambda: client.completions.create(model=model, prompt="x", logit_bias={"x": 1})),
            ("tools", lambda: client.chat.completions.create(
                tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}], **chat)),
            ("store", lambda: client.chat.completions.create(store=True, **chat)),
            ("response_format", lambda: client.chat.completions.create(
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
                    "type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}}}},
                **chat))]:
        out.append(name)
        refused(fn)
    return "400 for " + ", ".join(out)


def t_err_400():
    return expect(openai.BadRequestError, 400,
                  lambda: client.completions.create(model=model, prompt="x", max_tokens=-3))


def t_err_400_chat():
    return expect(openai.BadRequestError, 400,
                  lambda: client.chat.completions.create(model=model, messages=[], max_tokens=1))


def t_err_404_session():
    return expect(openai.NotFoundError, 404,
                  lambda: client.completions.create(model=model, prompt="x", max_tokens=1,
                                                    extra_body={"session": "0" * 32}))


def t_err_404_route():
    return expect(openai.NotFoundError, 404, lambda: client.get("/no/such/route", cast_to=object))


def t_err_401():
    bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong-" + key, max_retries=0, timeout=30)
    return expect(openai.AuthenticationError, 401,
                  lambda: bad.completions.create(model=model, prompt="x", max_tokens=1))


def t_stream_error():
    # an error before the first byte of a stream is an ordinary HTTP error
    return expect(openai.BadRequestError, 400,
                  lambda: list(client.completions.create(model=model, prompt="x", max_tokens=1, stream=True,
                                                         temperature=-1)))


for name, fn in [("models.list", t_models),
                 ("completions.create", t_completion),
                 ("completions.create with token ids and logprobs", t_completion_ids_logprobs),
                 ("completions.create stream=True with usage", t_completion_stream),
                 ("chat.completions.create", t_chat),
                 ("chat.completions.create stream=True with usage", t_chat_stream),
                 ("seed: drawn per request, reported, reproducible", t_seed),
                 ("logit_bias, presence/frequency_penalty, user, store=False, tool_choice, response_format text",
                  t_penalties_bias),
                 ("n=2 over a list of two prompts", t_n_and_prompt_list),
                 ("response_format json_schema", t_json_schema),
                 ("models.retrieve, and 404 for another id", t_model_retrieve),
                 ("404 model_not_found -> openai.NotFoundError", t_err_404_model),
                 ("400 for what proto/openapi.yaml refuses", t_refused),
                 ("400 -> openai.BadRequestError (max_tokens -3)", t_err_400),
                 ("400 -> openai.BadRequestError (chat without messages)", t_err_400_chat),
                 ("400 -> openai.BadRequestError before a stream starts", t_stream_error),
                 ("404 -> openai.NotFoundError (unknown session)", t_err_404_session),
                 ("404 -> openai.NotFoundError (unknown route)", t_err_404_route),
                 ("401 -> openai.AuthenticationError (wrong API key)", t_err_401)]:
    check(name, fn)
sys.exit(1 if failed else 0)
