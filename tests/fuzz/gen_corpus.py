#!/usr/bin/env python3
"""gen_corpus.py - writes the committed seed corpora of tests/fuzz/corpus/
from the repository's fixtures plus small hand-made inputs.  Run from the
repository root with /usr/bin/python3 (standard library only); never needed
by `make test` or `make fuzz`, which use the committed files."""
import hashlib
import json
import os
import struct
import zlib

ROOT = "tests/fuzz/corpus"


def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, meta=None, pad=0, align=8):
    hdr, blob = {}, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(hdr).encode() + b" " * pad
    while (8 + len(h)) % align:
        h += b" "
    return struct.pack("<Q", len(h)) + h + blob


def gen_safetensors():
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, -7)
    put("safetensors", safetensors({"a": ("F32", [2, 3], f32)}), "f32")
    put("safetensors", safetensors({"a": ("F16", [3], b"\x00\x3c\x00\xc0\x00\x7c"),
                                    "b": ("BF16", [1, 2], b"\x80\x3f\x00\x40"),
                                    "c": ("I64", [1], struct.pack("<q", 5))}, {"format": "pt"}), "mixed")
    put("safetensors", safetensors({"s": ("F32", [], struct.pack("<f", 2)), "e": ("F32", [0, 4], b"")}), "scalar_empty")
    put("safetensors", safetensors({"x": ("F16", [1], b"\x00\x3c")}, pad=5, align=1), "misaligned")
    put("safetensors", safetensors({}), "empty")
    for p in ("tests/fixtures/s4/s4d_minimal/model.safetensors",):
        with open(p, "rb") as f:
            put("safetensors", f.read(), "s4d_minimal")


def gguf(arch=b"mamba", n_dims=2, ggml_type=0, offset=0, extra_kv=b""):
    """A GGUF v3 file: the mamba.* keys and one tensor token_embd.weight."""
    def kstr(k):
        return struct.pack("<Q", len(k)) + k
    keys = [(b"mamba.embedding_length", 4), (b"mamba.block_count", 1), (b"mamba.ssm.state_size", 2),
            (b"mamba.ssm.conv_kernel", 2), (b"mamba.ssm.inner_size", 8),
            (b"mamba.ssm.time_step_rank", 1)]
    kv = kstr(b"general.architecture") + struct.pack("<I", 8) + kstr(arch)
    for k, v in keys:
        kv += kstr(k) + struct.pack("<II", 4, v)
    kv += extra_kv
    n_kv = 1 + len(keys) + (1 if extra_kv else 0)
    info = kstr(b"token_embd.weight") + struct.pack("<I", n_dims) + \
        struct.pack("<%dQ" % n_dims, *([4] + [3] * (n_dims - 1))) + struct.pack("<IQ", ggml_type, offset)
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, n_kv) + kv + info
    head += b"\0" * (-len(head) % 32)
    return head + struct.pack("<12f", *range(12))


def gen_gguf():
    put("gguf", gguf(), "minimal")
    put("gguf", gguf(ggml_type=8, n_dims=1), "q8_0")
    put("gguf", gguf(arch=b"llama"), "llama")
    arr = struct.pack("<Q", 21) + b"tokenizer.ggml.tokens" + struct.pack("<IIQ", 9, 8, 2) + \
        struct.pack("<Q", 1) + b"a" + struct.pack("<Q", 2) + b"bc"
    put("gguf", gguf(extra_kv=arr), "tokens")


def gen_safetensors_index():
    shard = safetensors({"a": ("F32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
                         "b": ("BF16", [2], b"\x80\x3f\x00\x40")})
    idx = {"metadata": {"total_size": 28}, "weight_map": {"a": "model-1.safetensors", "b": "model-1.safetensors"}}
    put("safetensors_index", json.dumps(idx).encode() + b"\x00" + shard, "one_shard")
    idx["weight_map"]["c"] = "model-2.safetensors"
    put("safetensors_index", json.dumps(idx).encode() + b"\x00" + shard, "missing_shard")
    idx["weight_map"] = {"a": "../model-1.safetensors"}
    put("safetensors_index", json.dumps(idx).encode() + b"\x00" + shard, "escape")


def gen_config():
    for dirpath, _, files in os.walk("tests/fixtures"):
        if "config.json" in files:
            with open(os.path.join(dirpath, "config.json"), "rb") as f:
                put("config", f.read(), os.path.basename(dirpath))
    put("config", '{"model_type":"mamba","d_model":64,"n_layer":2,"vocab_size":100,'
                  '"ssm_cfg":{"d_state":8,"d_conv":4,"expand":2},"tie_embeddings":true}', "original")
    put("config", '{"hidden_size":32,"num_hidden_layers":1,"vocab_size":10,"time_step_rank":"auto"}', "auto")


def gen_tokenizer_load():
    small = {
        "version": "1.0",
        "added_tokens": [{"id": 5, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {"h": 0, "e": 1, "l": 2, "o": 3, "he": 4, "\u0120": 6, "ll": 7},
                  "merges": ["h e", "l l"]},
    }
    put("tokenizer_load", json.dumps(small), "small")
    small2 = dict(small, model=dict(small["model"], merges=[["h", "e"], ["l", "l"]]), normalizer=None)
    put("tokenizer_load", json.dumps(small2), "small_pair_merges")
    for p in ("tests/fixtures/tokenizer/tokenizer.json", "tests/fixtures/mamba/text_tiny/tokenizer.json"):
        with open(p, "rb") as f:
            put("tokenizer_load", f.read(), p.split("/")[-2])


def gen_tokenizer():
    texts = ["Hello, world!", "caf\u00e9 na\u0308ive \u00c5ngstr\u00f6m", "  leading\n\n\ttabs   ",
             "<|endoftext|>hi<|endoftext|>", "\u4f60\u597d\uff0c\u4e16\u754c \U0001F600", "it's we'll I'M 1234567",
             "a" * 300]
    for i, t in enumerate(texts):
        put("tokenizer", b"\x00" + t.encode(), "text%d" % i)
    put("tokenizer", b"\x00\xff\xfe bad utf8 \xc3", "bad_utf8")
    ids = struct.pack("<8i", 15496, 11, 995, 0, 50256, 1, 2, 3)
    put("tokenizer", b"\x01" + ids, "ids")
    put("tokenizer", b"\x02" + ids, "ids_skip")
    put("tokenizer", b"\x01" + struct.pack("<4i", 159, 250, 227, 129), "split_utf8")


def gen_parse():
    bodies = [
        (0, {"prompt": "Hello", "max_tokens": 5}),
        (0, {"prompt": [1, 2, 3], "max_tokens": 3, "temperature": 0.5, "top_p": 0.9, "top_k": 4, "seed": 7}),
        (0, {"prompt": "x", "stream": True, "stream_options": {"include_usage": True}, "echo": True,
             "logprobs": 2, "stop": ["\n", "."], "n": 1, "session": "0123456789abcdef0123456789abcdef"}),
        (0, {"prompt": "x", "stop": "end", "presence_penalty": 0.1, "frequency_penalty": 0.2,
             "repetition_penalty": 1.1, "min_p": 0.05, "ignore_eos": True}),
        (1, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}),
        (3, {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
             "logprobs": True, "top_logprobs": 2, "add_generation_prompt": False}),
        (3, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                          {"role": "assistant", "content": None}]}),
        (1, {"messages": [], "max_tokens": -1}),
        (0, {"prompt": ["a", "b"], "max_tokens": 1e99}),
    ]
    for i, (mode, b) in enumerate(bodies):
        put("parse", bytes([mode]) + json.dumps(b).encode(), "body%d" % i)


def gen_tmpl():
    with open("tests/fixtures/mamba/text_tiny/chat_cases.json") as f:
        cases = json.load(f)
    for name, src in cases["templates"].items():
        put("tmpl", src, name)
    conv = json.dumps(cases["conversations"][-1]).encode()
    put("tmpl", cases["templates"]["chatml"].encode() + b"\x00" + conv, "chatml_conv")
    put("tmpl", "{% for m in messages %}{{ loop.index0 }}{{ m['role'] | length }}{{ m.content | trim }}"
                "{% if not loop.last %}, {% endif %}{% endfor %}{{ 'x' if add_generation_prompt else 'y' }}"
                "{% if bos_token is defined %}{{ bos_token ~ 1 + 2 % 3 }}{% endif %}"
                "{{ raise_exception('no') if messages|length > 9 }}", "mix")


def gen_state_fmt():
    def enc(state, n_tokens=3, pending=-1, fp="mamba1:abcdef", version=1, hdr=168, hist=None):
        b = bytearray(hdr)
        b[0:8] = b"SSMDSTAT"
        struct.pack_into("<IIQqiI", b, 8, version, hdr, len(state), n_tokens, pending, 1 if hist else 0)
        b[40:40 + len(fp)] = fp.encode()
        if hist:  # version 2: history hash, mark tokens, mark hash
            struct.pack_into("<QqQ", b, 168, *hist)
        b += state
        return bytes(b) + struct.pack("<I", zlib.crc32(bytes(b)))
    put("state_fmt", enc(bytes(range(64))), "valid64")
    put("state_fmt", enc(b"", 0, 42), "empty_pending")
    put("state_fmt", enc(b"\x01" * 16, fp="x" * 128), "long_fp")
    put("state_fmt", enc(b"\x01" * 16, version=2), "version2")
    put("state_fmt", enc(bytes(range(32)), 9, 5, version=2, hdr=192, hist=(0xcbf29ce484222325, 4, 77)),
        "v2_history")
    put("state_fmt", enc(b"\x03" * 8, version=2, hdr=192), "v2_no_history")
    put("state_fmt", enc(b"\x02" * 8)[:-1], "truncated")


def gen_route():
    for name, data in [("health", b"\x00/health"), ("completions", b"\x01/v1/completions?x=1"),
                       ("state", b"\x02/v1/sessions/0123456789abcdef0123456789abcdef/state"),
                       ("delete", b"\x03/v1/sessions/abc/"), ("fork", b"\x01/v1/sessions/abc/fork"),
                       ("brew", b"\x09BREW\n/v1/models"), ("longid", b"\x00/v1/sessions/" + b"a" * 100)]:
        put("route", data, name)


def gen_json_schema():
    person = (b'{"type":"object","properties":{"name":{"type":"string","maxLength":8},'
              b'"age":{"type":"integer"},"tags":{"type":"array","items":{"enum":["a",1,null]},"maxItems":2},'
              b'"pos":{"type":"object","properties":{"x":{"type":"number"}},"required":["x"]}},'
              b'"required":["name"]}')
    for name, data in [("person", person + b'\0{"name":"ab","age":-3,"tags":["a",1],"pos":{"x":1.5e2}}'),
                       ("prefix", person + b'\0 {"tags":[null'),
                       ("any", b'\0{"a":[1,{"b":"\\u00e9"}],"c":true}'),
                       ("refused", b'{"type":"object","properties":{"a":{"pattern":"x"}}}\0{}')]:
        put("json_schema", data, name)


if __name__ == "__main__":
    gen_safetensors()
    gen_safetensors_index()
    gen_gguf()
    gen_config()
    gen_tokenizer_load()
    gen_tokenizer()
    gen_parse()
    gen_tmpl()
    gen_state_fmt()
    gen_route()
    gen_json_schema()
