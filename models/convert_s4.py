#!/usr/bin/python3
"""convert_s4.py - converts a language model built from the reference
state-spaces/s4 layers into the ssmd S4 format (proto/s4-format.md).

Input: a PyTorch state dict (`torch.save`d .pt/.ckpt, a Lightning checkpoint
with a "state_dict" entry, or a .safetensors file) of a language model whose
blocks are either
  * the minimal `models/s4/s4d.py` `S4D` layer (keys D, kernel.log_dt,
    kernel.log_A_real, kernel.A_imag, kernel.C, output_linear.0.*), or
  * the full `models/s4/s4.py` `S4Block` (keys layer.D, layer.kernel.inv_dt
    (older: log_dt), layer.kernel.A_real (older: inv_A_real / log_A_real),
    layer.kernel.A_imag, layer.kernel.B, layer.kernel.C, [layer.kernel.P,
    layer.kernel.l_kernel for the DPLR kernel], output_linear.0.*), or
  * the DSS layer of ag1988/dss (`--kernel dss-exp` or `--kernel dss-softmax`;
    keys D, kernel.log_dt, kernel.Lambda_log_neg_re + kernel.Lambda_im (exp)
    or kernel.Lambda (softmax), kernel.W, output_linear.0.* with
    postact='glu'), written as an S4D model (see "DSS" in the format doc),
wrapped in: embedding -> n x [LayerNorm -> block -> residual] -> LayerNorm
-> LM head.  Where the wrapper's tensors live is given by --embedding,
--block, --norm, --final-norm and --lm-head (templates with {i}).

Output: DIR/config.json and DIR/model.safetensors.  What the converter does
to the numbers (all in float64, then stored as float32):
  * applies the reference's parameter transforms (--dt-transform,
    --real-transform, --imag-transform; the reference's defaults are exp,
    exp, none) and writes the continuous-time diagonal A = Lambda, B, C and
    log(dt) explicitly, so the runtime never guesses a sign convention;
  * broadcasts n_ssm < H shared (A, B, P) copies to all H channels;
  * for the DPLR kernel, undoes the truncated-generating-function trick: the
    reference stores C~ = C (I - dA^L) for L = l_kernel; we solve for C;
  * for DSS, folds the kernel's scale (exp) or softmax normaliser over the
    training length --dss-length (softmax) into C, with the reference's
    epsilons, so that 2 Re(C dA^k dB) is the reference's kernel K_k.

This file is a tool for users and for tests/fixtures/gen_s4.py; the server
never runs Python.  It never writes anything but the two output files.
"""
import argparse
import json
import math
import os
import re
import sys

import numpy as np

TRANSFORMS = ("none", "exp", "relu", "sigmoid", "softplus")


def param_transform(x, how):
    """The reference's positive-parameter transforms, in float64 numpy."""
    if how == "none":
        return x
    if how == "exp":
        return np.exp(x)
    if how == "relu":
        return np.maximum(x, 0.0) + 1e-4
    if how == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if how == "softplus":
        return np.logaddexp(0.0, x)
    raise ValueError("unknown transform %r" % how)


def c2n(t):
    """(..., 2) real view -> complex128 numpy."""
    t = np.asarray(t, dtype=np.float64)
    if t.shape[-1] != 2:
        raise ValueError("complex tensor must end in a dimension of 2, got %s" % (t.shape,))
    return t[..., 0] + 1j * t[..., 1]


def n2c(z):
    return np.stack([z.real, z.imag], axis=-1)


class ConvertError(Exception):
    pass


class Taker:
    """take(name): tensor `name` of sd as float64, recorded as used (a
    missing one is a ConvertError); leftover(): the names never taken."""

    def __init__(self, sd):
        self.sd, self.used = sd, set()

    def __call__(self, name):
        if name not in self.sd:
            raise ConvertError("missing tensor '%s'" % name)
        self.used.add(name)
        return np.asarray(self.sd[name], dtype=np.float64)

    def leftover(self):
        return sorted(k for k in self.sd if k not in self.used)


# ------------------------------------------------------------ S4 layers

def bilinear_dense(lam, P, dt):
    """Full (N x N, conjugate pairs expanded) bilinear dA of one channel with
    A = diag(lam) - P P^H.  lam (N2,), P (R, N2), dt scalar."""
    lam_f = np.concatenate([lam, lam.conj()])
    P_f = np.concatenate([P, P.conj()], axis=-1)  # (R, N)
    A = np.diag(lam_f) - P_f.T @ P_f.conj()
    eye = np.eye(A.shape[0])
    return np.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A)


def undo_c_tilde(lam, P, C_t, dt, L):
    """C from C~ = C (I - dA^L) (row vectors), per channel.  lam (H, N2),
    P (R, H, N2), C_t (H, N2), dt (H,)."""
    H, N2 = C_t.shape
    C = np.empty_like(C_t)
    for h in range(H):
        dA = bilinear_dense(lam[h], P[:, h], dt[h])
        M = np.eye(2 * N2) - np.linalg.matrix_power(dA, L)
        c_full = np.concatenate([C_t[h], C_t[h].conj()])
        c = np.linalg.solve(M.T, c_full)
        err = np.abs(c[N2:] - c[:N2].conj()).max() / max(1e-30, np.abs(c).max())
        if err > 1e-6:
            raise ConvertError("channel %d: recovered C is not conjugate-symmetric "
                               "(relative error %.3g); (I - dA^%d) is ill-conditioned" % (h, err, L))
        C[h] = c[:N2]
    return C


# ------------------------------------------------------------ DSS layers

DSS_KERNELS = ("dss-exp", "dss-softmax")


def recip(x, eps, clamp):
    """The reference DSS `reciprocal`: conj(x) / (|x|^2 + eps), or with
    clamp, conj(x) / max(|x|^2, eps)."""
    sq = (x * x.conj()).real
    return x.conj() / (np.maximum(sq, eps) if clamp else sq + eps)


def dss_ssm(sd, k, args, take):
    """The continuous diagonal SSM of a DSS kernel under prefix k, in the
    S4D format's terms: (dt (H,), A (H, N), B (H, N), C (H, N)) with
    K_l = 2 Re sum_n C B (exp(dt A) - 1) / A exp(dt A l) equal to the
    reference's K_l = Re sum_n W'_n exp(dtLambda_n l)."""
    W = c2n(take(k + "W"))                                   # (channels, H, N)
    if W.ndim != 3 or W.shape[0] != 1:
        raise ConvertError("%sW: shape %s; only channels=1 (no bidirectional, no hyper_act) "
                           "is supported" % (k, W.shape[:-1] if W.ndim else W.shape))
    W = W[0]
    H, N = W.shape
    if args.kernel == "dss-exp":
        if k + "Lambda" in sd:
            raise ConvertError("%sLambda is a DSS-softmax (or clip) parameter, but --kernel is "
                               "dss-exp (which stores %sLambda_log_neg_re)" % (k, k))
        if k + "Lambda_log_im" in sd:
            raise ConvertError("%sLambda_log_im: the exp-re-im version is not supported" % k)
        lam = -np.exp(take(k + "Lambda_log_neg_re")) + 1j * take(k + "Lambda_im")
    else:
        if k + "Lambda_log_neg_re" in sd:
            raise ConvertError("%sLambda_log_neg_re is a DSS-exp parameter, but --kernel is "
                               "dss-softmax (which stores %sLambda)" % (k, k))
        if not args.dss_length:
            raise ConvertError("%s: DSS-softmax normalises over the training length, which is "
                               "not in the checkpoint: pass --dss-length L" % k)
        lam = c2n(take(k + "Lambda"))
    if lam.shape != (N,):
        raise ConvertError("%s: Lambda has %s eigenvalues, W has N=%d" % (k, lam.shape, N))
    if np.any(lam.real >= 0):
        raise ConvertError("%sLambda: %d eigenvalues with real part >= 0; the recurrence would "
                           "not decay (ssmd serves unbounded lengths)"
                           % (k, int(np.sum(lam.real >= 0))))
    log_dt = take(k + "log_dt")
    if log_dt.shape == (H,):
        log_dt = np.stack([log_dt, log_dt], axis=-1)
    if log_dt.shape != (H, 2):
        raise ConvertError("%slog_dt: shape %s, expected (%d) or (%d, 2)" % (k, log_dt.shape, H, H))
    dt = np.exp(log_dt)                                      # (H, 2): for Re, Im (sep_dt_re_im)
    dt_lam = dt[:, :1] * lam.real + 1j * dt[:, 1:] * lam.imag  # (H, N)
    e1 = np.exp(dt_lam) - 1
    if args.kernel == "dss-exp":
        Wp = W * e1 * recip(lam, 1e-7, clamp=True)
    else:   # softmax over k = 0..L-1: 1 / sum_k exp(dtLambda k) = e1 / (exp(dtLambda L) - 1)
        den = np.exp(dt_lam * args.dss_length) - 1
        Wp = W * e1 * recip(den * lam, args.dss_epsilon, clamp=False)
    A = dt_lam / dt[:, :1]
    return dt[:, 0], A, np.ones_like(A), Wp / 2 * A / e1


def block_kind(sd, p):
    if p + "kernel.W" in sd:
        return "dss"
    if p + "kernel.log_A_real" in sd and p + "kernel.C" in sd and p + "kernel.B" not in sd:
        return "s4d_minimal"
    if p + "layer.kernel.C" in sd:
        return "s4block"
    return None


def convert_block(sd, p, args, take):
    """Returns (kind, dict of our per-layer tensors as float64 numpy, info)."""
    kind = block_kind(sd, p)
    out = {}
    if kind is None:
        raise ConvertError("no S4 block under '%s' (expected %skernel.C or %slayer.kernel.C)"
                           % (p, p, p))
    if (kind == "dss") != (args.kernel in DSS_KERNELS):
        raise ConvertError("%s: a %s layer, but --kernel is %s" % (
            p, "DSS (kernel.W)" if kind == "dss" else "state-spaces/s4", args.kernel or "not given"))
    if kind == "dss":
        dt, A, B, C = dss_ssm(sd, p + "kernel.", args, take)
        D = take(p + "D")[0]
        disc, P, l_kernel, H = "zoh", None, 0, C.shape[0]
    elif kind == "s4d_minimal":
        k = p + "kernel."
        log_dt = take(k + "log_dt")
        C = c2n(take(k + "C"))                       # (H, N2)
        A = -np.exp(take(k + "log_A_real")) + 1j * take(k + "A_imag")
        B = np.ones_like(C)
        D = take(p + "D")
        dt = np.exp(log_dt)
        disc, P, l_kernel = "zoh", None, 0
        H = C.shape[0]
    else:
        k = p + "layer.kernel."
        if k + "inv_dt" in sd:
            dt = param_transform(take(k + "inv_dt"), args.dt_transform)
        else:
            dt = np.exp(take(k + "log_dt"))
        if k + "A_real" in sd:
            a_re = param_transform(take(k + "A_real"), args.real_transform)
        elif k + "inv_A_real" in sd:
            a_re = param_transform(take(k + "inv_A_real"), args.real_transform)
        else:
            a_re = np.exp(take(k + "log_A_real"))
        a_im = param_transform(take(k + "A_imag"), args.imag_transform)
        A = -a_re - 1j * a_im                        # (S, N2)
        B = c2n(take(k + "B"))                       # (1, S, N2)
        C = c2n(take(k + "C"))                       # (channels, H, N2)
        if B.ndim == 3:
            B = B[0]
        if C.ndim == 3:
            if C.shape[0] != 1:
                raise ConvertError("%sC: %d channels (bidirectional or multi-head "
                                   "FFTConv) are not supported" % (k, C.shape[0]))
            C = C[0]
        D = take(p + "layer.D")
        if D.ndim == 2:
            D = D[0]
        H = C.shape[0]
        S = A.shape[0]
        if H % S:
            raise ConvertError("%s: n_ssm %d does not divide H %d" % (k, S, H))
        rep = np.arange(H) % S   # the reference repeats 't n -> (v t) n'
        A, B = A[rep], B[rep]
        P = None
        if k + "P" in sd:
            P = c2n(take(k + "P"))[:, rep]           # (R, H, N2)
            lk = take(k + "l_kernel") if k + "l_kernel" in sd else np.array(0)
            l_kernel = int(np.asarray(lk).reshape(-1)[0])
            disc = "bilinear"
        else:
            l_kernel = 0
            disc = args.disc
        if k + "l_kernel" in sd and P is None:
            take(k + "l_kernel")
    dt = np.asarray(dt, dtype=np.float64)
    if dt.ndim == 2 and dt.shape[1] == 1:
        dt = dt[:, 0]
    if P is not None and dt.ndim != 1:
        raise ConvertError("%s: untied dt (dt_tie=False) is not supported for the DPLR kernel" % p)
    if P is not None and l_kernel > 0:
        C = undo_c_tilde(A, P, C, dt, l_kernel)
    if p + "output_linear.weight" in sd:
        raise ConvertError("%soutput_linear.weight: an output linear without GLU (postact=None); "
                           "the format needs final_act/postact='glu'" % p)
    W = np.asarray(take(p + "output_linear.0.weight"), dtype=np.float64)
    if W.ndim == 3:   # s4d.py: Conv1d(H, 2H, kernel_size=1)
        W = W[..., 0]
    bias = take(p + "output_linear.0.bias").reshape(-1)   # DSS: (2H, 1), TransposedLinear
    if W.shape != (2 * H, H):
        raise ConvertError("%soutput_linear.0.weight: shape %s, expected (%d, %d) "
                           "(final_act='glu')" % (p, W.shape, 2 * H, H))
    out["ssm.log_dt"] = np.log(dt)
    out["ssm.A"] = n2c(A)
    out["ssm.B"] = n2c(B)
    out["ssm.C"] = n2c(C)
    if P is not None:
        out["ssm.P"] = n2c(P)
    out["ssm.D"] = np.asarray(D, dtype=np.float64)
    out["out.weight"] = W
    out["out.bias"] = np.asarray(bias, dtype=np.float64)
    info = {"kind": "s4" if P is not None else "s4d", "disc": disc, "H": H,
            "N": 2 * C.shape[1], "rank": 0 if P is None else P.shape[0]}
    return info, out


# ------------------------------------------------------------ the model

def convert_state_dict(sd, args):
    """sd: name -> numpy array.  Returns (config dict, tensors dict of
    float32 numpy arrays).  Raises ConvertError on anything unexpected."""
    take = Taker(sd)
    tensors, infos = {}, []
    i = 0
    while block_kind(sd, args.block.format(i=i)) is not None:
        info, t = convert_block(sd, args.block.format(i=i), args, take)
        nb = args.norm.format(i=i)
        t["norm.weight"] = take(nb + "weight")
        t["norm.bias"] = take(nb + "bias")
        for name, v in t.items():
            tensors["layers.%d.%s" % (i, name)] = v
        infos.append(info)
        i += 1
    if not infos:
        raise ConvertError("no S4 block found at '%s'" % args.block.format(i=0))
    first = infos[0]
    for j, info in enumerate(infos):
        if info != first:
            raise ConvertError("layer %d differs from layer 0: %s vs %s" % (j, info, first))
    emb = take(args.embedding)
    tensors["embedding.weight"] = emb
    tensors["norm_f.weight"] = take(args.final_norm + "weight")
    tensors["norm_f.bias"] = take(args.final_norm + "bias")
    tied = args.lm_head not in sd
    if not tied:
        tensors["lm_head.weight"] = take(args.lm_head)
        hb = args.lm_head.rsplit(".", 1)[0] + ".bias"
        if hb in sd:
            tensors["lm_head.bias"] = take(hb)
    leftover = [k for k in take.leftover() if not k.endswith("omega") and not k.endswith(".z")]
    if leftover and not args.allow_unused:
        raise ConvertError("tensors not understood (gates, bottlenecks, adaptive softmax... "
                           "are not supported): %s" % ", ".join(leftover[:8]))
    vocab = args.vocab_size or emb.shape[0]
    cfg = {
        "model_type": first["kind"],
        "d_model": first["H"],
        "n_layer": len(infos),
        "vocab_size": int(vocab),
        "d_state": first["N"],
        "discretization": first["disc"],
        "activation": "gelu",
        "layer_norm_epsilon": args.eps,
        "tie_embeddings": tied,
        "bos_token_id": args.bos,
        "eos_token_id": args.eos,
    }
    if first["kind"] == "s4":
        cfg["rank"] = first["rank"]
    return cfg, {k: v.astype(np.float32) for k, v in tensors.items()}


def load_any(path):
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        return dict(load_file(path))
    import torch
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    out = {}
    for k, v in obj.items():
        if hasattr(v, "detach"):
            v = v.detach()
            if v.is_complex():
                v = torch.view_as_real(v)
            out[k] = v.double().numpy()
    return out


def write(out_dir, cfg, tensors, fmt="ssmd-s4"):
    """DIR/config.json and DIR/model.safetensors (metadata format `fmt`)."""
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}, path,
              metadata={"format": fmt})
    os.chmod(path, 0o644)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="state dict (.pt/.ckpt/.safetensors)")
    ap.add_argument("out_dir")
    ap.add_argument("--strip-prefix", default="", help="drop this prefix from every key (e.g. 'model.')")
    ap.add_argument("--embedding", default="encoder.weight")
    ap.add_argument("--block", default="layers.{i}.layer.", help="prefix of block i")
    ap.add_argument("--norm", default="layers.{i}.norm.", help="prefix of block i's LayerNorm")
    ap.add_argument("--final-norm", default="norm.")
    ap.add_argument("--lm-head", default="decoder.weight", help="absent from the dict = tied")
    ap.add_argument("--dt-transform", default="exp", choices=TRANSFORMS)
    ap.add_argument("--real-transform", default="exp", choices=TRANSFORMS)
    ap.add_argument("--imag-transform", default="none", choices=TRANSFORMS)
    ap.add_argument("--disc", default="zoh", choices=("zoh", "bilinear"),
                    help="discretisation of the diagonal (S4D) kernel")
    ap.add_argument("--kernel", choices=DSS_KERNELS, default=None,
                    help="the blocks are DSS layers of this version (not in the state dict)")
    ap.add_argument("--dss-length", type=int, default=0,
                    help="dss-softmax: the training length L the softmax normalises over")
    ap.add_argument("--dss-epsilon", type=float, default=1e-7,
                    help="dss-softmax: the kernel's epsilon (DSSKernel default 1e-7)")
    ap.add_argument("--eps", type=float, default=1e-5, help="LayerNorm epsilon")
    ap.add_argument("--vocab-size", type=int, default=0, help="default: embedding rows")
    ap.add_argument("--bos", type=int, default=None)
    ap.add_argument("--eos", type=int, default=None)
    ap.add_argument("--allow-unused", action="store_true")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    sd = load_any(args.input)
    if args.strip_prefix:
        sd = {k[len(args.strip_prefix):] if k.startswith(args.strip_prefix) else k: v
              for k, v in sd.items()}
    try:
        cfg, tensors = convert_state_dict(sd, args)
    except ConvertError as e:
        sys.exit("convert_s4: %s: %s" % (args.input, e))
    write(args.out_dir, cfg, tensors)
    print("convert_s4: wrote %s (%s, %d layers, H=%d, N=%d)"
          % (args.out_dir, cfg["model_type"], cfg["n_layer"], cfg["d_model"], cfg["d_state"]))


if __name__ == "__main__":
    main()
