#!/usr/bin/python3
"""export.py - writes the best checkpoint of train_mamba.py as a Hugging Face
Mamba model directory (config.json + model.safetensors in BF16; the
tokenizer files are already there from train_tokenizer.py), then checks it:

 1. transformers' MambaForCausalLM loads the directory and its logits (fp32
    compute from the BF16 weights, transformers' own sequential path) equal
    mamba_model.MambaLM's with the same BF16-rounded weights, max |diff| <
    1e-4, on held-out text and on random ids;
 2. the held-out loss of the shipped (BF16) weights: per token (nats and
    perplexity) and per byte (bits per byte, byte perplexity), with the same
    windows as train_mamba.py's evaluation;
 3. with --ssmd BIN: the engine's logits (`ssmd generate --dump-logits`)
    equal transformers' on a held-out prompt (max |diff| < 2e-3), and its
    greedy continuations are printed as samples;
 4. chat, on the held-out chapters' dialogues (val_dialog.txt, never
    trained on): each first exchange, prompt "<|user|>\nQ<|end|>\n<|assistant|>\n"
    and answer "verse<|end|>", scored teacher-forced (answer loss; how often
    <|end|> is the argmax right after the verse, and before it); with
    --ssmd, ssmd's greedy reply to the first CHAT_N prompts, counting those
    that end with <|end|> (eos) before 256 tokens.  Reported, and the
    export fails if fewer than half of the greedy replies end.

Writes OUT/export.json with every number; exits non-zero if a check fails.
Usage:
  /usr/bin/python3 models/train/export.py --run /tmp/ssmd-train/run \\
      --data /tmp/ssmd-train --out models/default [--ssmd build/ssmd]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mamba_model  # noqa: E402
import train_mamba  # noqa: E402

# transformers 4.44's MambaCache calls torch._dynamo.mark_static_address,
# which Debian's torch 1.13 lacks; it is only a torch.compile hint.
if not hasattr(torch, "_dynamo"):
    torch._dynamo = types.SimpleNamespace(mark_static_address=lambda t: None,
                                          is_compiling=lambda: False)

PROMPTS = ["And God said", "In the beginning", "The LORD is my shepherd",
           "And Jesus answered and said unto them"]
HF_TOL = 1e-4
CHAT_N = 40
END_OF_TURN = "<|end|>"
ENGINE_TOL = 2e-3


def write_model(ckpt, out):
    cfg = dict(ckpt["config"])
    cfg["torch_dtype"] = "bfloat16"
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in ckpt["state_dict"].items()}
    os.makedirs(out, exist_ok=True)
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    return cfg, {k: v.float() for k, v in sd.items()}


def byte_lengths(tok_path):
    """Bytes per token id: a byte-level token's string has one char per byte."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    n = tok.get_vocab_size()
    special = {t.content for t in tok.get_added_tokens_decoder().values()} \
        if hasattr(tok, "get_added_tokens_decoder") else set()
    return torch.tensor([0 if tok.id_to_token(i) in special else len(tok.id_to_token(i))
                         for i in range(n)], dtype=torch.float64), tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default="/tmp/ssmd-train/run")
    ap.add_argument("--data", default="/tmp/ssmd-train")
    ap.add_argument("--out", default="models/default")
    ap.add_argument("--ssmd", default=None, help="ssmd binary for the engine checks")
    ap.add_argument("--seq", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    report, ok = {}, True

    ckpt = torch.load(os.path.join(args.run, "best.pt"))
    cfg, sd32 = write_model(ckpt, args.out)
    report["checkpoint"] = {"step": ckpt["step"], "val_loss_fp32": ckpt["val_loss"]}
    report["params"] = sum(v.numel() for v in sd32.values())
    report["safetensors_bytes"] = os.path.getsize(os.path.join(args.out, "model.safetensors"))

    ours = mamba_model.MambaLM(cfg)
    ours.load_state_dict(sd32)
    ours.eval()
    mamba_model.load_scan_lib(os.path.join(args.run, "lib"), cfg["state_size"])

    tok_path = os.path.join(args.out, "tokenizer.json")
    nbytes, tok = byte_lengths(tok_path)
    val_ids, val_bytes = train_mamba.tokenize(tok_path, os.path.join(args.data, "val.txt"))

    # 1. transformers parity
    from transformers import MambaForCausalLM
    hf = MambaForCausalLM.from_pretrained(args.out, torch_dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(7)
    probes = [val_ids[:200].unsqueeze(0), val_ids[5000:5100].unsqueeze(0),
              torch.randint(0, cfg["vocab_size"], (2, 64), generator=g)]
    diff = 0.0
    with torch.no_grad():
        for ids in probes:
            diff = max(diff, (hf(ids).logits - ours(ids)).abs().max().item())
    report["hf_max_abs_diff"] = diff
    ok &= diff < HF_TOL
    print("export: transformers vs training model, max |logit diff| = %.3g (tol %g)" % (diff, HF_TOL))

    # 2. held-out loss of the shipped weights, per token and per byte
    with torch.no_grad():
        n_win = (len(val_ids) - 1) // args.seq
        wins = val_ids[: n_win * args.seq + 1]
        nats, count, nb = 0.0, 0, 0.0
        for i in range(0, n_win, 16):
            x = torch.stack([wins[j * args.seq: j * args.seq + args.seq + 1]
                             for j in range(i, min(n_win, i + 16))])
            logits = ours(x[:, :-1])
            nats += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                    reduction="sum").item()
            count += x[:, 1:].numel()
            nb += nbytes[x[:, 1:]].sum().item()
    report["val"] = {"tokens_scored": count, "bytes_scored": int(nb), "val_text_bytes": val_bytes,
                     "loss_per_token": nats / count, "ppl_per_token": math.exp(nats / count),
                     "bits_per_byte": nats / nb / math.log(2), "ppl_per_byte": math.exp(nats / nb)}
    print("export: held-out (bf16 weights): %.4f nats/token (ppl %.2f), %.4f bits/byte "
          "(byte ppl %.3f) over %d tokens / %d bytes"
          % (report["val"]["loss_per_token"], report["val"]["ppl_per_token"],
             report["val"]["bits_per_byte"], report["val"]["ppl_per_byte"], count, int(nb)))

    # greedy samples from transformers itself (reference for the engine's)
    report["samples_transformers"] = {}
    with torch.no_grad():
        for p in PROMPTS:
            ids = torch.tensor([tok.encode(p).ids])
            out = hf.generate(ids, max_new_tokens=40, do_sample=False,
                              eos_token_id=cfg["eos_token_id"], pad_token_id=0)
            report["samples_transformers"][p] = tok.decode(out[0, ids.shape[1]:].tolist())

    # 3. the engine
    if args.ssmd:
        prompt = val_ids[:48].tolist()
        with tempfile.TemporaryDirectory() as td:
            dump = os.path.join(td, "logits.f32")
            subprocess.run([args.ssmd, "generate", "--model", args.out, "--prompt-ids",
                            ",".join(map(str, prompt)), "--max-tokens", "1", "--temperature", "0",
                            "--threads", "1", "--dump-logits", dump, "--print-ids"],
                           check=True, stdout=subprocess.DEVNULL)
            rows = np.fromfile(dump, dtype=np.float32).reshape(-1, cfg["vocab_size"])
        with torch.no_grad():
            ref = hf(torch.tensor([prompt])).logits[0].numpy()
        ediff = float(np.abs(rows - ref[: rows.shape[0]]).max())
        report["engine_max_abs_diff"] = ediff
        report["engine_rows"] = int(rows.shape[0])
        ok &= ediff < ENGINE_TOL and rows.shape[0] == len(prompt)
        print("export: ssmd vs transformers, %d rows, max |logit diff| = %.3g (tol %g)"
              % (rows.shape[0], ediff, ENGINE_TOL))
        report["samples_ssmd"] = {}
        for p in PROMPTS:
            r = subprocess.run([args.ssmd, "generate", "--model", args.out, "--prompt", p,
                                "--temperature", "0", "--max-tokens", "40", "--threads", "1"],
                               check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            text = r.stdout.decode("utf-8", "replace")
            report["samples_ssmd"][p] = text
            same = text.strip() == report["samples_transformers"][p].strip()
            print("export: ssmd greedy %r -> %r%s" % (p, text, "" if same else "  [differs from transformers]"))

    # 4. chat on the held-out dialogues
    import re
    import prepare_corpus
    exchanges = re.findall(r"<\|user\|>\n(.*?)<\|end\|>\n<\|assistant\|>\n(.*?)<\|end\|>\n",
                           open(os.path.join(args.data, "val_dialog.txt"), encoding="ascii").read())
    firsts = [(q, a) for q, a in exchanges if q not in prepare_corpus.NEXT]
    end_id = tok.token_to_id(END_OF_TURN)
    nats, count, end_top, early, p_end = 0.0, 0, 0, 0, 0.0
    with torch.no_grad():
        for q, a in firsts:
            prompt = tok.encode("<|user|>\n%s%s\n<|assistant|>\n" % (q, END_OF_TURN)).ids
            answer = tok.encode(a + END_OF_TURN).ids
            x = torch.tensor([prompt + answer])
            logits = ours(x[:, :-1])[0, len(prompt) - 1:]
            nats += F.cross_entropy(logits, torch.tensor(answer), reduction="sum").item()
            count += len(answer)
            top = logits.argmax(-1)
            end_top += int(top[-1] == end_id)
            early += int((top[:-1] == end_id).any())
            p_end += F.softmax(logits[-1], -1)[end_id].item()
    chat = {"dialogues": len(firsts), "answer_tokens": count, "answer_loss_per_token": nats / count,
            "end_is_argmax_after_verse": end_top / len(firsts),
            "mean_p_end_after_verse": p_end / len(firsts),
            "end_is_argmax_before_verse_ends": early / len(firsts)}
    print("export: held-out dialogues (%d): answer loss %.4f nats/token; <|end|> is the argmax after "
          "the verse in %.1f%% (mean p %.3f), somewhere before its end in %.1f%%"
          % (len(firsts), chat["answer_loss_per_token"], 100 * chat["end_is_argmax_after_verse"],
             chat["mean_p_end_after_verse"], 100 * chat["end_is_argmax_before_verse_ends"]))
    if args.ssmd:
        stopped, lengths, replies = 0, [], []
        for q, a in firsts[:CHAT_N]:
            prompt = tok.encode("<|user|>\n%s%s\n<|assistant|>\n" % (q, END_OF_TURN)).ids
            r = subprocess.run([args.ssmd, "generate", "--model", args.out, "--prompt-ids",
                                ",".join(map(str, prompt)), "--temperature", "0", "--max-tokens", "256",
                                "--threads", "1", "--print-ids"],
                               check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            ids = [int(t) for t in re.findall(r"-?\d+", r.stdout.decode())]
            ended = len(ids) < 256 or (ids and ids[-1] == end_id)
            stopped += int(ended)
            lengths.append(len(ids))
            replies.append({"q": q, "reply": tok.decode([i for i in ids if i != end_id]),
                            "tokens": len(ids), "ended": bool(ended)})
        chat.update({"ssmd_greedy_replies": len(lengths), "ssmd_greedy_ended": stopped,
                     "ssmd_greedy_mean_tokens": sum(lengths) / len(lengths),
                     "ssmd_greedy_samples": replies[:8]})
        ok &= stopped * 2 >= len(lengths)
        print("export: ssmd greedy chat on %d held-out questions: %d ended by themselves "
              "(mean %.1f tokens)" % (len(lengths), stopped, chat["ssmd_greedy_mean_tokens"]))
        for r in replies[:4]:
            print("export: chat %r -> %r (%d tokens%s)" % (r["q"], r["reply"], r["tokens"],
                                                         "" if r["ended"] else ", did not end"))
    report["chat"] = chat

    report["ok"] = bool(ok)
    with open(os.path.join(args.run, "export.json"), "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    print("export: %s; report in %s" % ("OK" if ok else "FAILED", os.path.join(args.run, "export.json")))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
