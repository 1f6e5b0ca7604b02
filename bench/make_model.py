#!/usr/bin/python3
"""make_model.py - writes a random mamba-130m-shaped model for benchmarks.

  /usr/bin/python3 bench/make_model.py OUT_DIR --dtype f32|bf16 [--family mamba|mamba2] [--seed 0]

Writes OUT_DIR/config.json and OUT_DIR/model.safetensors in the Hugging Face
`transformers` layout, F32 or BF16 tensors: Mamba (hidden 768, 24 layers,
vocab 50280, state 16, expand 2, conv 4, tied embeddings; no
lm_head.weight), or with --family mamba2 the shape of state-spaces/
mamba2-130m (hidden 768, 24 layers, 24 heads of 64, state 128, one group,
conv 4, tied).
The weights are random (transformers' init under a fixed seed): fine for
speed, meaningless as text.  Never downloads anything; never writes outside
OUT_DIR.  Takes a few seconds.
"""
import argparse
import json
import os
import sys
import time

import torch
import transformers
from safetensors.torch import save_file
from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

DTYPES = {"f32": (torch.float32, "float32"), "bf16": (torch.bfloat16, "bfloat16")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--family", choices=("mamba", "mamba2"), default="mamba")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.time()
    transformers.logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    dtype, dname = DTYPES[args.dtype]

    if args.family == "mamba2":
        cfg = Mamba2Config(vocab_size=50280, hidden_size=768, num_hidden_layers=24,
                           state_size=128, num_heads=24, head_dim=64, n_groups=1, expand=2,
                           conv_kernel=4, tie_word_embeddings=True, layer_norm_epsilon=1e-5)
        make = Mamba2ForCausalLM
    else:
        cfg = MambaConfig(vocab_size=50280, hidden_size=768, num_hidden_layers=24,
                          state_size=16, expand=2, conv_kernel=4, time_step_rank="auto",
                          tie_word_embeddings=True, layer_norm_epsilon=1e-5)
        make = MambaForCausalLM
    with torch.no_grad():
        model = make(cfg)
        sd = model.state_dict()
        sd.pop("lm_head.weight")  # tied: the loader uses the embedding
        tensors = {k: v.to(dtype).contiguous() for k, v in sd.items()}

    os.makedirs(args.out_dir, exist_ok=True)
    d = cfg.to_dict()
    d["architectures"] = [make.__name__]
    d["torch_dtype"] = dname
    with open(os.path.join(args.out_dir, "config.json"), "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
        f.write("\n")
    path = os.path.join(args.out_dir, "model.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    os.chmod(path, 0o644)  # safetensors creates it 0600; servers may run as another user
    n = sum(t.numel() for t in tensors.values())
    print("wrote %s: %.1fM parameters, %s, %.1f s"
          % (args.out_dir, n / 1e6, dname, time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
