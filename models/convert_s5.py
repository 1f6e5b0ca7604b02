#!/usr/bin/python3
"""convert_s5.py - converts a language model built from the reference S5
layers (lindermanlab/S5) into the ssmd S5 format (proto/s5-format.md).

Input: the model's parameters, flattened to one name per array (flax's
`flatten_dict(params, sep="/")` saved with numpy.savez as .npz, a
.safetensors file, or a torch state dict); "/" and "." both separate name
parts.  The parameter names are the reference's:
  * an encoder `Dense` on one-hot tokens (kernel (V, H), bias (H): the
    embedding of token v is kernel[v] + bias) or an `Embed` table
    (embedding (V, H)), at --embedding;
  * per layer at --block (a template with {i}; the reference's
    StackedEncoderModel names them encoder/layers_{i}): the SequenceLayer's
    norm/scale and norm/bias (LayerNorm), seq/{Lambda_re, Lambda_im, B, C,
    D, log_step} (S5SSM), and out1/out2 (Dense kernel (H, H), bias) of the
    GLU activations;
  * a final LayerNorm (scale, bias) at --final-norm and an LM head `Dense`
    (kernel (H, V), bias) at --lm-head (absent: tied to the embedding).
The reference's StackedEncoderModel has no final norm and no LM head of its
own: an LM wraps it with both, under names the options give.

What the state dict does not record is given on the command line:
--disc (zoh or bilinear), --no-conj-sym, --activation, --gelu-exact,
--clip-eigs (folded into Lambda_re as the reference clips it) and
--step-rescale (folded into log_step).

Refused, with a message naming what: a bidirectional layer (seq/C1 and
seq/C2, or a C with 2P columns), batch norm (norm/mean, norm/var statistics
or --batchnorm), an activation whose tensors are missing or extra, layers
that differ in shape, and any tensor not understood.

Output: DIR/config.json and DIR/model.safetensors, written in float64
arithmetic then stored as float32.  This file is a tool for users and for
tests/fixtures/gen_s5.py; the server never runs Python.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from convert_s4 import ConvertError, Taker, load_any, write  # noqa: E402

ACTIVATIONS = ("gelu", "full_glu", "half_glu1", "half_glu2")


def normalise_names(sd, strip):
    """'/'-separated flax names to '.', and the prefix `strip` removed."""
    out = {}
    for k, v in sd.items():
        k = k.replace("/", ".")
        if strip and k.startswith(strip):
            k = k[len(strip):]
        out[k] = v
    return out


def dense_weight(kernel):
    """flax Dense kernel (in, out) -> our (out, in) weight."""
    return np.ascontiguousarray(np.asarray(kernel, dtype=np.float64).T)


def convert_layer(sd, p, args, take):
    """Tensors of one SequenceLayer under prefix p, and its shape info."""
    s = p + "seq."
    if s + "C1" in sd or s + "C2" in sd:
        raise ConvertError("'%sC1'/'%sC2': a bidirectional S5 layer reads the future; "
                           "a language model cannot" % (s, s))
    if p + "norm.mean" in sd or p + "norm.var" in sd or args.batchnorm:
        raise ConvertError("'%snorm': batch norm is not supported (only LayerNorm)" % p)
    lre = take(s + "Lambda_re").reshape(-1)
    lim = take(s + "Lambda_im").reshape(-1)
    P = lre.shape[0]
    B = take(s + "B")
    C = take(s + "C")
    D = take(s + "D").reshape(-1)
    log_step = take(s + "log_step")
    H = D.shape[0]
    if lim.shape != (P,) or B.shape != (P, H, 2) or log_step.reshape(-1).shape != (P,):
        raise ConvertError("'%s': Lambda_im %s, B %s, log_step %s do not fit P=%d, H=%d"
                           % (s, lim.shape, B.shape, log_step.shape, P, H))
    if C.shape == (H, 2 * P, 2):
        raise ConvertError("'%sC' has 2P columns: a bidirectional S5 layer reads the future; "
                           "a language model cannot" % s)
    if C.shape != (H, P, 2):
        raise ConvertError("'%sC' is %s, expected (%d, %d, 2)" % (s, C.shape, H, P))
    if args.clip_eigs:  # the reference's clip_eigs=True: Re lambda <= -1e-4
        lre = np.minimum(lre, -1e-4)
    t = {
        "ssm.Lambda_re": lre,
        "ssm.Lambda_im": lim,
        "ssm.B": B,
        "ssm.C": C,
        "ssm.D": D,
        "ssm.log_step": log_step.reshape(-1) + math.log(args.step_rescale),
        "norm.weight": take(p + "norm.scale"),
        "norm.bias": take(p + "norm.bias"),
    }
    outs = ("out1", "out2") if args.activation == "full_glu" else \
        ("out2",) if args.activation != "gelu" else ()
    for o in ("out1", "out2"):
        if o in outs:
            t[o + ".weight"] = dense_weight(take(p + o + ".kernel"))
            t[o + ".bias"] = take(p + o + ".bias")
        elif p + o + ".kernel" in sd:
            raise ConvertError("'%s%s.kernel' with --activation %s (which has no %s)"
                               % (p, o, args.activation, o))
    return (H, P), t


def convert_state_dict(sd, args):
    """sd: name -> numpy array (names normalised).  Returns (config dict,
    tensors dict of float32 arrays).  Raises ConvertError on anything
    unexpected."""
    take = Taker(sd)
    tensors, shapes = {}, []
    i = 0
    while args.block.format(i=i) + "seq.Lambda_re" in sd:
        shape, t = convert_layer(sd, args.block.format(i=i), args, take)
        if shapes and shape != shapes[0]:
            raise ConvertError("layer %d is (H, P) = %s, layer 0 %s" % (i, shape, shapes[0]))
        shapes.append(shape)
        tensors.update({"layers.%d.%s" % (i, k): v for k, v in t.items()})
        i += 1
    if not shapes:
        raise ConvertError("no S5 layer found at '%s'" % (args.block.format(i=0) + "seq.Lambda_re"))
    H, P = shapes[0]
    e = args.embedding
    if e + "kernel" in sd:  # Dense on one-hot tokens: row v of the kernel plus the bias
        emb = take(e + "kernel") + (take(e + "bias") if e + "bias" in sd else 0.0)
    else:
        emb = take(e + "embedding")
    if emb.ndim != 2 or emb.shape[1] != H:
        raise ConvertError("embedding at '%s' is %s, expected (V, %d)" % (e, emb.shape, H))
    tensors["embedding.weight"] = emb
    fn = args.final_norm
    if fn + "scale" not in sd:
        raise ConvertError("no final LayerNorm at '%sscale' (the format has one; the reference "
                           "StackedEncoderModel does not, the LM around it must)" % fn)
    tensors["norm_f.weight"] = take(fn + "scale")
    tensors["norm_f.bias"] = take(fn + "bias")
    tied = args.lm_head + "kernel" not in sd
    if not tied:
        tensors["lm_head.weight"] = dense_weight(take(args.lm_head + "kernel"))
        if args.lm_head + "bias" in sd:
            tensors["lm_head.bias"] = take(args.lm_head + "bias")
    leftover = take.leftover()
    if leftover:
        raise ConvertError("tensors not understood: %s" % ", ".join(leftover[:8]))
    cfg = {
        "model_type": "s5",
        "d_model": H,
        "n_layer": len(shapes),
        "vocab_size": int(args.vocab_size or emb.shape[0]),
        "ssm_size": P,
        "conj_sym": not args.no_conj_sym,
        "discretization": args.disc,
        "activation": args.activation,
        "gelu_approximate": not args.gelu_exact,
        "layer_norm_epsilon": args.eps,
        "tie_embeddings": tied,
        "bos_token_id": args.bos,
        "eos_token_id": args.eos,
    }
    return cfg, {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}


def load_params(path):
    if path.endswith(".npz"):
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    return load_any(path)


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="parameters (.npz of flattened flax params, .safetensors, .pt)")
    ap.add_argument("out_dir")
    ap.add_argument("--strip-prefix", default="params.",
                    help="drop this prefix from every name (after '/' -> '.')")
    ap.add_argument("--embedding", default="encoder.encoder.",
                    help="prefix of the token encoder (Dense kernel/bias, or Embed embedding)")
    ap.add_argument("--block", default="encoder.layers_{i}.", help="prefix of layer i")
    ap.add_argument("--final-norm", default="final_norm.", help="prefix of the final LayerNorm")
    ap.add_argument("--lm-head", default="decoder.", help="prefix of the head Dense; absent = tied")
    ap.add_argument("--disc", default="zoh", choices=("zoh", "bilinear"))
    ap.add_argument("--no-conj-sym", action="store_true",
                    help="the model was trained with conj_sym=False (y = Re(C x))")
    ap.add_argument("--activation", default="gelu", choices=ACTIVATIONS)
    ap.add_argument("--gelu-exact", action="store_true",
                    help="the model used the erf GELU (flax's nn.gelu default is the tanh form)")
    ap.add_argument("--clip-eigs", action="store_true", help="the model used clip_eigs=True")
    ap.add_argument("--step-rescale", type=float, default=1.0)
    ap.add_argument("--batchnorm", action="store_true",
                    help="the model used batch norm (refused: named for a clear message)")
    ap.add_argument("--eps", type=float, default=1e-6, help="LayerNorm epsilon (flax: 1e-6)")
    ap.add_argument("--vocab-size", type=int, default=0, help="default: embedding rows")
    ap.add_argument("--bos", type=int, default=None)
    ap.add_argument("--eos", type=int, default=None)
    return ap


def convert(sd, args):
    """Names normalised, then convert_state_dict."""
    if not args.step_rescale > 0:
        raise ConvertError("--step-rescale must be positive")
    return convert_state_dict(normalise_names(sd, args.strip_prefix), args)


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        cfg, tensors = convert(load_params(args.input), args)
    except ConvertError as e:
        sys.exit("convert_s5: %s: %s" % (args.input, e))
    write(args.out_dir, cfg, tensors, fmt="ssmd-s5")
    print("convert_s5: wrote %s (%d layers, H=%d, P=%d, %s)"
          % (args.out_dir, cfg["n_layer"], cfg["d_model"], cfg["ssm_size"], cfg["activation"]))


if __name__ == "__main__":
    main()
