#!/usr/bin/python3
"""hf_bench.py - the peer baseline: transformers' MambaForCausalLM on the CPU.

  /usr/bin/python3 bench/hf_bench.py MODEL_DIR [--threads 2] [--prompt-len 512]
      [--batches 1,4,16,64] [--decode-steps N] [--target-s 4] [--no-bf16]

Loads MODEL_DIR (HF Mamba layout, e.g. from bench/make_model.py) with
torch_dtype=float32 and measures, after a warm-up:
  - prefill tokens/s: one forward with use_cache=True over one prompt of
    --prompt-len random tokens (median of up to 3 runs);
  - decode tokens/s (summed over the batch) for each batch size: the prompt
    is a few tokens, then one token per step through the MambaCache API
    (cache_params + cache_position, as `generate` drives it).
When the weights are BF16 it also runs with torch_dtype=bfloat16 (key
"bf16", or "bf16_error" when that fails).  Prints ONE JSON object on stdout;
progress goes to stderr.  Never writes files; never downloads anything.
Without CUDA kernels transformers runs its slow path: a Python loop over the
sequence for the scan, so prefill is far from what the model allows.
"""
import argparse
import json
import os
import statistics
import sys
import time
import types

# torch, transformers: imported in main(), after the thread environment is set
torch = transformers = MambaForCausalLM = None

DECODE_PROMPT = 4  # tokens prefilled before the timed decode steps


def setup_threads(threads):
    """Debian's torch runs GEMMs in OpenBLAS's own pthread pool (sized to the
    machine, not by torch.set_num_threads) and everything else in libgomp's
    pool, whose idle workers spin.  On a 2-core machine the two pools fight
    and decode gets 3-10x slower; measured best: both pools of --threads
    and passive OpenMP waits.  Values already in the environment win.
    Must run before torch is imported.  Returns the settings used."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY")}


def import_torch():
    global torch, transformers, MambaForCausalLM
    import torch as _torch
    import transformers as _transformers
    from transformers import MambaForCausalLM as _mamba
    torch, transformers, MambaForCausalLM = _torch, _transformers, _mamba
    # transformers 4.44's MambaCache calls torch._dynamo.mark_static_address,
    # which Debian's torch 1.13 lacks; it is only a torch.compile hint.
    if not hasattr(torch, "_dynamo"):
        torch._dynamo = types.SimpleNamespace(mark_static_address=lambda t: None,
                                              is_compiling=lambda: False)


def log(msg):
    print("hf_bench: " + msg, file=sys.stderr, flush=True)


def weights_dtype(model_dir):
    """The dtype of the first floating tensor in model.safetensors."""
    with open(model_dir + "/model.safetensors", "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    for k, v in header.items():
        if k != "__metadata__":
            return v["dtype"]
    return "unknown"


def bench_prefill(model, vocab, prompt_len, target_s, gen):
    ids = torch.randint(0, vocab, (1, 32), generator=gen)
    model(ids, use_cache=True)  # warm-up
    ids = torch.randint(0, vocab, (1, prompt_len), generator=gen)
    times = []
    start = time.perf_counter()
    while len(times) < 3 and (not times or time.perf_counter() - start < target_s):
        t0 = time.perf_counter()
        model(ids, use_cache=True)
        times.append(time.perf_counter() - t0)
    return prompt_len / statistics.median(times)


def bench_decode(model, cfg, batch, steps, target_s, gen):
    """Returns (tokens/s over the batch, steps timed)."""
    ids = torch.randint(0, cfg.vocab_size, (batch, DECODE_PROMPT), generator=gen)
    out = model(ids, use_cache=True)  # prefill: cache_position = arange(conv_kernel)
    cache = out.cache_params
    tok = out.logits[:, -1].argmax(-1, keepdim=True)
    pos = cfg.conv_kernel  # generate's convention: >= conv_kernel after prefill

    def step(n):
        nonlocal cache, tok, pos
        for _ in range(n):
            out = model(tok, cache_params=cache, use_cache=True,
                        cache_position=torch.tensor([pos]))
            cache = out.cache_params
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            pos += 1

    step(2)  # warm-up
    if steps <= 0:
        t0 = time.perf_counter()
        step(2)
        per = (time.perf_counter() - t0) / 2
        steps = max(3, min(1000, int(round(target_s / per))))
    t0 = time.perf_counter()
    step(steps)
    dt = time.perf_counter() - t0
    return batch * steps / dt, steps


def run(model_dir, dtype, args):
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    model = MambaForCausalLM.from_pretrained(model_dir, torch_dtype=dtype).eval()
    cfg = model.config
    log("loaded %s as %s in %.1f s" % (model_dir, dtype, time.perf_counter() - t0))
    res = {"prefill_tok_s": None, "decode_tok_s": {}, "decode_steps": {}}
    with torch.no_grad():
        res["prefill_tok_s"] = round(bench_prefill(model, cfg.vocab_size, args.prompt_len,
                                                   args.target_s, gen), 2)
        log("prefill %d tokens: %.1f tok/s" % (args.prompt_len, res["prefill_tok_s"]))
        for b in args.batches:
            tps, steps = bench_decode(model, cfg, b, args.decode_steps, args.target_s, gen)
            res["decode_tok_s"][str(b)] = round(tps, 2)
            res["decode_steps"][str(b)] = steps
            log("decode batch %d: %.1f tok/s (%d steps)" % (b, tps, steps))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=512)
    ap.add_argument("--batches", default="1,4,16,64")
    ap.add_argument("--decode-steps", type=int, default=0,
                    help="steps per batch size (default: about --target-s seconds)")
    ap.add_argument("--target-s", type=float, default=4.0,
                    help="seconds aimed at per measurement")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-bf16", action="store_true",
                    help="skip the torch_dtype=bfloat16 run for BF16 weights")
    args = ap.parse_args()
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b]
        assert args.batches and min(args.batches) > 0
    except (ValueError, AssertionError):
        ap.error("--batches: comma-separated positive integers")
    if args.prompt_len < 1 or args.threads < 1:
        ap.error("--prompt-len and --threads must be positive")

    env = setup_threads(args.threads)
    import_torch()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    wdt = weights_dtype(args.model_dir)
    result = {"impl": "transformers", "dtype": "f32", "weights_dtype": wdt.lower(),
              "threads": args.threads, "env": env, "prompt_len": args.prompt_len,
              "torch": torch.__version__, "transformers": transformers.__version__}
    result.update(run(args.model_dir, torch.float32, args))
    if wdt == "BF16" and not args.no_bf16:
        try:
            result["bf16"] = run(args.model_dir, torch.bfloat16, args)
        except Exception as e:  # report, do not lose the f32 numbers
            result["bf16_error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
