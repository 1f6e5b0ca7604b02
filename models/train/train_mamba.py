#!/usr/bin/python3
"""train_mamba.py - trains the default Mamba-1 model on the CPU, with one
thread, from the corpus of prepare_corpus.py and the tokenizer of
train_tokenizer.py.  export.py turns its best checkpoint into models/default.

Deterministic: fixed seeds, one torch thread, a fixed number of steps and a
fixed sampling of the training windows; the same machine gives the same
losses bit for bit (the fused scan in ssm_scan.c sums in a fixed order).
A wall-clock limit (--time-limit) stops the run early only as a safety net;
the log says whether it did, and --stop-after N replays such a run exactly
(same schedule, same N steps) without depending on the clock.

Model: mamba_model.MambaLM with the Hugging Face MambaConfig of
mamba_model.hf_config, initialised as transformers initialises
MambaForCausalLM(config) after torch.manual_seed(--seed).
Training: next-token cross-entropy on random windows of --seq tokens of the
tokenized training text; AdamW (betas 0.9/0.95, weight decay on matrices and
embeddings only), linear warm-up then cosine decay to 10%, gradient clipping
at 1.0.  Every --eval-every steps the whole held-out text is scored (windows
of --seq tokens, each from a zero state); the best checkpoint is kept.

Writes under --out: log.jsonl (one JSON object per logged step or eval),
best.pt ({"config", "state_dict", "step", "val_loss"}), summary.json.

Usage (the default model, exactly):
  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 /usr/bin/python3 models/train/train_mamba.py \\
      --data /tmp/ssmd-train --tokenizer models/default/tokenizer.json --out /tmp/ssmd-train/run
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mamba_model  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/ssmd-train", help="train.txt and val.txt")
    ap.add_argument("--tokenizer", default="models/default/tokenizer.json")
    ap.add_argument("--out", default="/tmp/ssmd-train/run")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--state", type=int, default=16)
    ap.add_argument("--expand", type=int, default=2)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1100)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=3600.0, help="seconds; safety stop")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="end after this many steps, keeping the --steps schedule (0 = --steps); "
                         "replays a run that --time-limit ended")
    return ap.parse_args(argv)


def tokenize(tok_path, text_path):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tok_path)
    with open(text_path, encoding="ascii") as f:
        text = f.read()
    ids = tok.encode(text, add_special_tokens=False).ids
    return torch.tensor(ids, dtype=torch.long), len(text.encode("ascii"))


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def evaluate(model, ids, seq, batch):
    """Mean next-token loss (nats) over ids, in windows of seq+1 tokens that
    overlap by one (every token but the first is predicted once)."""
    model.eval()
    n_win = (len(ids) - 1) // seq
    wins = ids[: n_win * seq + 1]
    total, count = 0.0, 0
    for i in range(0, n_win, batch):
        rows = [wins[j * seq: j * seq + seq + 1] for j in range(i, min(n_win, i + batch))]
        x = torch.stack(rows)
        logits = model(x[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                 reduction="sum").item()
        count += x[:, 1:].numel()
    model.train()
    return total / count, count


def main():
    args = parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)

    train_ids, _ = tokenize(args.tokenizer, os.path.join(args.data, "train.txt"))
    val_ids, _ = tokenize(args.tokenizer, os.path.join(args.data, "val.txt"))
    from tokenizers import Tokenizer
    vocab = Tokenizer.from_file(args.tokenizer).get_vocab_size()

    cfg = mamba_model.hf_config(vocab, args.hidden, args.layers, args.state, args.expand)
    model = mamba_model.MambaLM(cfg)
    mamba_model.hf_init_(model, args.seed)
    mamba_model.load_scan_lib(os.path.join(args.out, "lib"), args.state)
    n_params = sum(p.numel() for p in model.parameters())

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 and not name.endswith("A_log") else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(args.seed)

    log = open(os.path.join(args.out, "log.jsonl"), "w")

    def emit(rec):
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(json.dumps(rec), flush=True)

    emit({"event": "start", "args": vars(args), "params": n_params, "train_tokens": len(train_ids),
          "val_tokens": len(val_ids), "torch": torch.__version__})
    t0 = time.time()
    best, best_step, stopped_early = float("inf"), -1, False
    run_loss, run_n = 0.0, 0
    step = 0
    for step in range(args.steps):
        starts = torch.randint(0, len(train_ids) - args.seq - 1, (args.batch,), generator=gen)
        x = torch.stack([train_ids[s: s + args.seq + 1] for s in starts.tolist()])
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
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
            emit({"step": step + 1, "loss": round(run_loss / run_n, 4), "lr": lr_at(step, args),
                  "gnorm": round(gnorm, 3), "elapsed_s": round(elapsed, 1),
                  "tok_per_s": round((step + 1) * args.batch * args.seq / elapsed)})
            run_loss, run_n = 0.0, 0
        last = (step + 1 == args.steps or step + 1 == args.stop_after
                or elapsed > args.time_limit)
        if (step + 1) % args.eval_every == 0 or last:
            vl, _ = evaluate(model, val_ids, args.seq, 16)
            rec = {"event": "eval", "step": step + 1, "val_loss": round(vl, 4),
                   "val_ppl": round(math.exp(vl), 2), "elapsed_s": round(time.time() - t0, 1)}
            if vl < best:
                best, best_step = vl, step + 1
                torch.save({"config": cfg, "state_dict": model.state_dict(), "step": step + 1,
                            "val_loss": vl}, os.path.join(args.out, "best.pt"))
                rec["saved"] = True
            emit(rec)
        if last and step + 1 < args.steps:
            stopped_early = True
            break
    summary = {"params": n_params, "steps_done": step + 1, "steps_planned": args.steps,
               "stopped_early": stopped_early, "train_seconds": round(time.time() - t0, 1),
               "tokens_seen": (step + 1) * args.batch * args.seq, "best_step": best_step,
               "best_val_loss": best, "config": cfg}
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    emit({"event": "done", **{k: v for k, v in summary.items() if k != "config"}})


if __name__ == "__main__":
    main()
