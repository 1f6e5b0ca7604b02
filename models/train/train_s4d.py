#!/usr/bin/python3
"""train_s4d.py - trains models/default-s4d, a small S4D language model, on
the CPU with one thread, on the same KJV corpus (prepare_corpus.py) and the
same byte-level BPE tokenizer (models/default/tokenizer.json) as the default
Mamba model, then writes it in ssmd's S4D format (proto/s4-format.md) and
checks ssmd's logits against this script's.

It never writes outside --out and --export-dir, and never needs the engine
except for the export check (--ssmd).

Model (proto/s4-format.md, model_type "s4d", ZOH):
  x = embedding[ids]
  n_layer x [z = LayerNorm(x); y = gelu(S4D(z) + D z); o = y W^T + b (H->2H);
             x = x + o[:, :H] * sigmoid(o[:, H:])]
  logits = LayerNorm_f(x) embedding^T                      (tied head)
S4D is the minimal s4d.py parameterisation: per channel h and pair n,
A = -exp(log_A_real) + i A_imag (init -1/2 + i pi n), B = 1 (fixed),
C complex (init randn), log_dt (H) (init uniform in [log 1e-3, log 1e-1]),
ZOH: dA = exp(dt A), dB = (exp(dt A) - 1)/A.  Training uses the convolution
view: the Vandermonde kernel K_l = 2 Re sum_n C_n dB_n dA_n^l and an FFT
convolution of length 2L; this is the same function as the recurrence the
engine runs, since every window starts from a zero state.

Training: next-token cross-entropy on random windows of --seq tokens of the
training text; AdamW (betas 0.9/0.95, eps 1e-8; weight decay --weight-decay
on the output linears and the embedding only; the SSM's log_dt, log_A_real
and A_imag at lr min(--lr, --ssm-lr) without decay, as the S4 recipe does),
linear warm-up then cosine decay to 10%, gradient clipping at 1.0.  Every
--eval-every steps the whole held-out text is scored exactly as
train_mamba.py does (windows of --seq tokens overlapping by one, each from a
zero state).  Deterministic: fixed seeds, one torch thread, a fixed number of
steps and a fixed window sampling.  --time-limit is only a safety stop (the
log says if it fired; --stop-after N replays such a run without the clock).

Export (--export-dir): config.json + model.safetensors (F32), the held-out
loss of the exported weights per token and per byte, greedy/sampled samples
from ssmd, and the engine check: `ssmd generate --dump-logits` on a held-out
prompt must match this model's logits within 1e-3 of each row's max |logit|.

Usage (models/default-s4d, exactly):
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 models/train/train_s4d.py \\
      --data /tmp/ssmd-train --tokenizer models/default/tokenizer.json \\
      --out /tmp/ssmd-train/s4d --export-dir models/default-s4d --ssmd build/ssmd
  (--export-only re-exports and re-checks an existing --out/best.pt.)
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ENGINE_RTOL = 1e-3   # |ssmd - torch| <= ENGINE_RTOL * max|row|, every row
PROMPTS = ["And God said", "The LORD is my shepherd", "And Jesus answered and said unto them"]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/ssmd-train", help="train.txt and val.txt")
    ap.add_argument("--tokenizer", default="models/default/tokenizer.json")
    ap.add_argument("--out", default="/tmp/ssmd-train/s4d")
    ap.add_argument("--export-dir", default="", help="write the ssmd model here after training")
    ap.add_argument("--ssmd", default="", help="ssmd binary for the export checks")
    ap.add_argument("--export-only", action="store_true", help="skip training; export --out/best.pt")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--state", type=int, default=64, help="N (N/2 complex pairs per channel)")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ssm-lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=3600.0, help="seconds; safety stop")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="end after this many steps, keeping the --steps schedule (0 = --steps)")
    return ap.parse_args(argv)


# ------------------------------------------------------------------ model

class S4D(nn.Module):
    """H independent diagonal SSMs, ZOH, convolution view.  u (B, H, L)."""

    def __init__(self, H, N):
        super().__init__()
        n2 = N // 2
        self.log_dt = nn.Parameter(torch.rand(H) * (math.log(0.1) - math.log(0.001)) + math.log(0.001))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, n2, dtype=torch.cfloat)).clone())
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(H, n2)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n2, dtype=torch.float32).repeat(H, 1))
        self.D = nn.Parameter(torch.randn(H))

    def lam(self):
        return torch.complex(-torch.exp(self.log_A_real), self.A_imag)     # (H, N2)

    def kernel(self, L):
        dt = torch.exp(self.log_dt)[:, None]                                 # (H, 1)
        A = self.lam()
        dtA = A * dt                                                          # (H, N2)
        coef = torch.view_as_complex(self.C) * (torch.exp(dtA) - 1.0) / A     # C dB
        ar = torch.arange(L, device=A.device, dtype=torch.float32)
        V = torch.exp(dtA[..., None] * ar)                                    # (H, N2, L)
        return 2 * torch.einsum("hn,hnl->hl", coef, V).real                   # (H, L)

    def forward(self, u):
        L = u.shape[-1]
        K = self.kernel(L)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
        return y + self.D[:, None] * u


def gelu(x):
    """Exact (erf) GELU.  Written out because F.gelu's backward in Debian's
    torch 1.13.0a0 returns garbage (inf/nan) for some non-contiguous
    gradients, which blew the gradient norm up to 1e13 at step 1."""
    return 0.5 * x * (1.0 + torch.erf(x * 0.7071067811865476))


class Block(nn.Module):
    def __init__(self, H, N):
        super().__init__()
        self.norm = nn.LayerNorm(H, eps=1e-5)
        self.ssm = S4D(H, N)
        self.out = nn.Linear(H, 2 * H)

    def forward(self, x):                                                     # (B, L, H)
        z = self.norm(x).transpose(1, 2)                                      # (B, H, L)
        y = gelu(self.ssm(z)).transpose(1, 2)                                 # (B, L, H)
        o = self.out(y)
        return x + F.glu(o, dim=-1)                                           # a * sigmoid(b)


class S4DLM(nn.Module):
    def __init__(self, vocab, H, n_layer, N):
        super().__init__()
        self.embedding = nn.Embedding(vocab, H)
        nn.init.normal_(self.embedding.weight, std=0.02)
        self.layers = nn.ModuleList([Block(H, N) for _ in range(n_layer)])
        self.norm_f = nn.LayerNorm(H, eps=1e-5)

    def forward(self, ids):                                                   # (B, L) -> (B, L, V)
        x = self.embedding(ids)
        for blk in self.layers:
            x = blk(x)
        return self.norm_f(x) @ self.embedding.weight.T


def ssmd_tensors(model):
    """state dict -> ssmd S4D tensors (float32 numpy), per proto/s4-format.md."""
    out = {"embedding.weight": model.embedding.weight,
           "norm_f.weight": model.norm_f.weight, "norm_f.bias": model.norm_f.bias}
    for i, b in enumerate(model.layers):
        p = "layers.%d." % i
        A = b.ssm.lam()
        out[p + "norm.weight"] = b.norm.weight
        out[p + "norm.bias"] = b.norm.bias
        out[p + "ssm.log_dt"] = b.ssm.log_dt
        out[p + "ssm.A"] = torch.view_as_real(A)
        out[p + "ssm.B"] = torch.stack([torch.ones_like(A.real), torch.zeros_like(A.real)], -1)
        out[p + "ssm.C"] = b.ssm.C
        out[p + "ssm.D"] = b.ssm.D
        out[p + "out.weight"] = b.out.weight
        out[p + "out.bias"] = b.out.bias
    return {k: np.ascontiguousarray(v.detach().float().numpy()) for k, v in out.items()}


# ------------------------------------------------------------------ data

def tokenize(tok_path, text_path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    with open(text_path, encoding="ascii") as f:
        text = f.read()
    ids = tok.encode(text, add_special_tokens=False).ids
    return torch.tensor(ids, dtype=torch.long), len(text.encode("ascii"))


def byte_lengths(tok_path):
    """Bytes per token id (a byte-level token's string has one char per byte)."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    special = {t.content for t in tok.get_added_tokens_decoder().values()}
    return torch.tensor([0 if tok.id_to_token(i) in special else len(tok.id_to_token(i))
                         for i in range(tok.get_vocab_size())], dtype=torch.float64)


def lr_at(step, args, peak):
    if step < args.warmup:
        return peak * (step + 1) / args.warmup
    p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return peak * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def evaluate(model, ids, seq, batch, nbytes=None):
    """(mean nats/token, tokens, bytes) over ids, in windows of seq+1 tokens
    overlapping by one, each from a zero state (as train_mamba.py)."""
    model.eval()
    n_win = (len(ids) - 1) // seq
    wins = ids[: n_win * seq + 1]
    total, count, nb = 0.0, 0, 0.0
    for i in range(0, n_win, batch):
        x = torch.stack([wins[j * seq: j * seq + seq + 1] for j in range(i, min(n_win, i + batch))])
        logits = model(x[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += x[:, 1:].numel()
        if nbytes is not None:
            nb += nbytes[x[:, 1:]].sum().item()
    model.train()
    return total / count, count, nb


# ------------------------------------------------------------------ train

def train(args, model, vocab, train_ids, val_ids, emit):
    ssm_names = ("log_dt", "log_A_real", "A_imag")
    decay, no_decay, ssm = [], [], []
    for name, p in model.named_parameters():
        if name.split(".")[-1] in ssm_names:
            ssm.append(p)
        elif p.dim() == 2 and not name.endswith(".C"):
            decay.append(p)
        else:
            no_decay.append(p)
    ssm_peak = min(args.lr, args.ssm_lr)
    groups = [{"params": decay, "weight_decay": args.weight_decay, "peak": args.lr},
              {"params": no_decay, "weight_decay": 0.0, "peak": args.lr},
              {"params": ssm, "weight_decay": 0.0, "peak": ssm_peak}]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    best, best_step, stopped_early = float("inf"), -1, False
    run_loss, run_n, step = 0.0, 0, 0
    for step in range(args.steps):
        starts = torch.randint(0, len(train_ids) - args.seq - 1, (args.batch,), generator=gen)
        x = torch.stack([train_ids[s: s + args.seq + 1] for s in starts.tolist()])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args, g["peak"])
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip).item()
        opt.step()
        run_loss += loss.item()
        run_n += 1
        elapsed = time.time() - t0
        if (step + 1) % args.log_every == 0:
            emit({"step": step + 1, "loss": round(run_loss / run_n, 4), "lr": lr_at(step, args, args.lr),
                  "gnorm": round(gnorm, 3), "elapsed_s": round(elapsed, 1),
                  "tok_per_s": round((step + 1) * args.batch * args.seq / elapsed)})
            run_loss, run_n = 0.0, 0
        last = step + 1 == args.steps or step + 1 == args.stop_after or elapsed > args.time_limit
        if (step + 1) % args.eval_every == 0 or last:
            vl, _, _ = evaluate(model, val_ids, args.seq, 16)
            rec = {"event": "eval", "step": step + 1, "val_loss": round(vl, 4),
                   "val_ppl": round(math.exp(vl), 2), "elapsed_s": round(time.time() - t0, 1)}
            if vl < best:
                best, best_step = vl, step + 1
                torch.save({"args": vars(args), "vocab": vocab, "state_dict": model.state_dict(),
                            "step": step + 1, "val_loss": vl}, os.path.join(args.out, "best.pt"))
                rec["saved"] = True
            emit(rec)
        if last and step + 1 < args.steps:
            stopped_early = True
            break
    return {"steps_done": step + 1, "steps_planned": args.steps, "stopped_early": stopped_early,
            "train_seconds": round(time.time() - t0, 1),
            "tokens_seen": (step + 1) * args.batch * args.seq, "best_step": best_step,
            "best_val_loss": best}


# ------------------------------------------------------------------ export

def export(args, model, vocab, val_ids, emit):
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer
    out = args.export_dir
    os.makedirs(out, exist_ok=True)
    tensors = ssmd_tensors(model)
    save_file(dict(sorted(tensors.items())), os.path.join(out, "model.safetensors"),
              metadata={"format": "ssmd-s4"})
    os.chmod(os.path.join(out, "model.safetensors"), 0o644)
    # the end-of-turn token is the eos (train_tokenizer.py); 0 for a tokenizer without one
    eos = Tokenizer.from_file(args.tokenizer).token_to_id("<|end|>")
    eos = 0 if eos is None else eos
    cfg = {"model_type": "s4d", "d_model": args.hidden, "n_layer": args.layers, "vocab_size": vocab,
           "d_state": args.state, "discretization": "zoh", "activation": "gelu", "final_act": "glu",
           "prenorm": True, "layer_norm_epsilon": 1e-5, "tie_embeddings": True,
           "bos_token_id": 0, "eos_token_id": eos}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    src = os.path.dirname(os.path.abspath(args.tokenizer))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    rep = {"params": sum(p.numel() for p in model.parameters()),
           "safetensors_bytes": os.path.getsize(os.path.join(out, "model.safetensors")),
           "config": cfg}

    # held-out loss of the exported (F32, i.e. identical) weights
    nbytes = byte_lengths(args.tokenizer)
    vl, count, nb = evaluate(model, val_ids, args.seq, 16, nbytes)
    nats = vl * count
    rep["val"] = {"tokens_scored": count, "bytes_scored": int(nb), "loss_per_token": vl,
                  "ppl_per_token": math.exp(vl), "bits_per_byte": nats / nb / math.log(2),
                  "ppl_per_byte": math.exp(nats / nb)}
    emit({"event": "export_val", **rep["val"]})
    ok = True
    if args.ssmd:
        prompt = val_ids[:48].tolist()
        with tempfile.TemporaryDirectory() as td:
            dump = os.path.join(td, "logits.f32")
            subprocess.run([args.ssmd, "generate", "--model", out, "--prompt-ids",
                            ",".join(map(str, prompt)), "--max-tokens", "1", "--temperature", "0",
                            "--threads", "1", "--dump-logits", dump, "--print-ids"],
                           check=True, stdout=subprocess.DEVNULL)
            rows = np.fromfile(dump, dtype=np.float32).reshape(-1, vocab)
        model.eval()
        with torch.no_grad():
            ref = model(torch.tensor([prompt]))[0].double().numpy()
        n = min(len(rows), len(ref))
        rel = float((np.abs(rows[:n] - ref[:n]).max(1) / np.abs(ref[:n]).max(1)).max())
        rep["engine"] = {"rows": int(rows.shape[0]), "prompt_tokens": len(prompt),
                         "max_abs_diff": float(np.abs(rows[:n] - ref[:n]).max()),
                         "max_rel_to_row_max": rel, "tolerance": ENGINE_RTOL}
        ok &= rel <= ENGINE_RTOL and rows.shape[0] == len(prompt)
        emit({"event": "engine_check", **rep["engine"], "ok": bool(ok)})
        tok = Tokenizer.from_file(args.tokenizer)
        rep["samples_greedy"], rep["samples_sampled"] = {}, {}
        # greedy from this model vs ssmd, for the record
        for p in PROMPTS:
            r = subprocess.run([args.ssmd, "generate", "--model", out, "--prompt", p,
                                "--temperature", "0", "--max-tokens", "40", "--threads", "1"],
                               check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            rep["samples_greedy"][p] = r.stdout.decode("utf-8", "replace")
            seq = tok.encode(p).ids
            with torch.no_grad():
                for _ in range(40):
                    seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
            mine = tok.decode(seq[len(tok.encode(p).ids):])
            rep.setdefault("samples_greedy_torch", {})[p] = mine
        for p, seed in (("And God said", 1), ("And it came to pass", 1), ("And it came to pass", 3)):
            r = subprocess.run([args.ssmd, "generate", "--model", out, "--prompt", p,
                                "--temperature", "0.8", "--top-p", "0.95", "--seed", str(seed),
                                "--max-tokens", "60", "--threads", "1"],
                               check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            rep["samples_sampled"]["%s (seed %d)" % (p, seed)] = r.stdout.decode("utf-8", "replace")
    rep["ok"] = bool(ok)
    return rep


def main():
    args = parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train_ids, _ = tokenize(args.tokenizer, os.path.join(args.data, "train.txt"))
    val_ids, val_bytes = tokenize(args.tokenizer, os.path.join(args.data, "val.txt"))
    from tokenizers import Tokenizer
    vocab = Tokenizer.from_file(args.tokenizer).get_vocab_size()
    model = S4DLM(vocab, args.hidden, args.layers, args.state)
    n_params = sum(p.numel() for p in model.parameters())
    log = open(os.path.join(args.out, "log.jsonl"), "a" if args.export_only else "w")

    def emit(rec):
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(json.dumps(rec), flush=True)

    if not args.export_only:
        emit({"event": "start", "args": vars(args), "params": n_params, "train_tokens": len(train_ids),
              "val_tokens": len(val_ids), "torch": torch.__version__})
        summary = train(args, model, vocab, train_ids, val_ids, emit)
        summary["params"] = n_params
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
            f.write("\n")
        emit({"event": "done", **summary})
    if args.export_dir:
        ck = torch.load(os.path.join(args.out, "best.pt"))
        model.load_state_dict(ck["state_dict"])
        rep = export(args, model, vocab, val_ids, emit)
        rep["step"] = ck["step"]
        rep["val_text_bytes"] = val_bytes
        with open(os.path.join(args.out, "export.json"), "w") as f:
            json.dump(rep, f, indent=1)
            f.write("\n")
        print("export: %s" % ("OK" if rep["ok"] else "FAILED"), flush=True)
        sys.exit(0 if rep["ok"] else 1)


if __name__ == "__main__":
    main()
