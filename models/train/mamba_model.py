"""mamba_model.py - a Mamba-1 language model in plain PyTorch for training on
the CPU: the same parameter names, shapes and math as transformers'
MambaForCausalLM (4.44, slow path), with a fast selective scan.

What it must never do: differ from transformers' math (export.py checks the
logits agree to 1e-4).  It needs torch, gcc for the fused scan, and
transformers only in hf_init_.

Parameter names are those of the Hugging Face checkpoint, so the state dict
exports as is: backbone.embeddings.weight, backbone.layers.N.norm.weight,
backbone.layers.N.mixer.{in_proj.weight, conv1d.weight, conv1d.bias,
x_proj.weight, dt_proj.weight, dt_proj.bias, A_log, D, out_proj.weight},
backbone.norm_f.weight; the LM head is tied to the embeddings.

Block: h = h + out_proj(y), with, from u = RMSNorm(h):
  x, z = in_proj(u).chunk(2)                  x, z: [B, L, Di]
  x = silu(causal depthwise conv1d(x) + bias)
  dt_r, Bm, Cm = x_proj(x).split(R, N, N)
  dt = softplus(dt_proj(dt_r))                [B, L, Di]
  dA = exp(dt * A), A = -exp(A_log)           [L, B, Di, N]
  s_t = dA_t * s_{t-1} + (dt_t * x_t) Bm_t    [L, B, Di, N], s_{-1} = 0
  y = (s_t . Cm_t + D * x) * silu(z)
The scan (dA, the recurrence and the contraction with Cm) runs in the C
kernels of ssm_scan.c through ctypes (scan_fused: one pass over [B, L, Di, N]
forward, one backward, no temporaries but the saved states) once
load_scan_lib() has been called, else in torch ops (scan_torch: the
reference, slow); everything else is whole-sequence tensor ops.
"""
import ctypes
import math
import os
import subprocess

import torch
import torch.nn.functional as F
from torch import nn


class _TorchScan(torch.autograd.Function):
    """Reference recurrence in torch ops: s_t = a_t * s_{t-1} + u_t over dim 0,
    s_{-1} = 0; a, u: [L, ...] contiguous.  Slow (whole [L, B, Di, N]
    temporaries); used to check the fused C scan."""

    @staticmethod
    def forward(ctx, a, u):
        s = torch.empty_like(u)
        s[0] = u[0]
        for t in range(1, u.shape[0]):
            torch.addcmul(u[t], a[t], s[t - 1], out=s[t])
        ctx.save_for_backward(a, s)
        return s

    @staticmethod
    def backward(ctx, g):
        a, s = ctx.saved_tensors
        g = g.contiguous()
        lam = torch.empty_like(g)  # dLoss/ds_t through all later steps
        n = g.shape[0]
        lam[n - 1] = g[n - 1]
        for t in range(n - 2, -1, -1):
            torch.addcmul(g[t], a[t + 1], lam[t + 1], out=lam[t])
        ga = torch.empty_like(a)
        ga[0].zero_()
        torch.mul(lam[1:], s[:-1], out=ga[1:])
        return ga, lam


def scan_torch(x, dt, A, bm, cm):
    """y [B, L, Di] = sum_n s_t[d, n] cm_t[n] in torch ops (reference)."""
    dt_t = dt.transpose(0, 1).contiguous()  # [L, B, Di]
    da = torch.exp(dt_t.unsqueeze(-1) * A)  # [L, B, Di, N]
    dbx = (dt_t * x.transpose(0, 1)).unsqueeze(-1) * bm.transpose(0, 1).unsqueeze(2)
    s = _TorchScan.apply(da.contiguous(), dbx.contiguous())
    return torch.matmul(s, cm.transpose(0, 1).unsqueeze(-1)).squeeze(-1).transpose(0, 1)


_LIB = None


def load_scan_lib(build_dir, state_size):
    """Compiles ssm_scan.c for this state size into build_dir (gcc) and loads
    it; once per process."""
    global _LIB
    if _LIB is not None:
        assert _LIB.state_size == state_size
        return _LIB
    here = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(build_dir, exist_ok=True)
    so = os.path.join(build_dir, "ssm_scan_n%d.so" % state_size)
    subprocess.run(["gcc", "-O3", "-march=native", "-ffast-math", "-fPIC", "-shared",
                    "-DSSM_N=%d" % state_size, "-o", so, os.path.join(here, "ssm_scan.c"), "-lm"],
                   check=True)
    lib = ctypes.CDLL(so)
    P, I = ctypes.c_void_p, ctypes.c_int
    lib.ssm_scan_fwd.argtypes = [I, I, I] + [P] * 8
    lib.ssm_scan_bwd.argtypes = [I, I, I] + [P] * 13
    lib.ssm_scan_fwd.restype = lib.ssm_scan_bwd.restype = None
    lib.state_size = state_size
    _LIB = lib
    return lib


def _ptr(t):
    assert t.dtype == torch.float32 and t.is_contiguous()
    return ctypes.c_void_p(t.data_ptr())


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dt, A, bm, cm, S):
        x, dt, A, bm, cm = (t.contiguous() for t in (x, dt, A, bm, cm))
        B, L, Di = x.shape
        N = A.shape[1]
        y = x.new_empty(B, L, Di)
        assert S.shape == (B, L, Di, N) and S.is_contiguous()
        work = x.new_empty(Di * N)
        assert N == _LIB.state_size
        _LIB.ssm_scan_fwd(B, L, Di, *map(_ptr, (x, dt, A, bm, cm, y, S, work)))
        ctx.save_for_backward(x, dt, A, bm, cm, S)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, dt, A, bm, cm, S = ctx.saved_tensors
        dy = dy.contiguous()
        B, L, Di = x.shape
        N = A.shape[1]
        dx, ddt, dA = torch.empty_like(x), torch.empty_like(dt), torch.empty_like(A)
        dbm, dcm, work = torch.empty_like(bm), torch.empty_like(cm), x.new_empty(2 * Di * N)
        _LIB.ssm_scan_bwd(B, L, Di, *map(_ptr, (x, dt, A, bm, cm, S, dy, dx, ddt, dA, dbm, dcm,
                                                    work)))
        return dx, ddt, dA, dbm, dcm, None


def scan_fused(x, dt, A, bm, cm, S):
    """Same as scan_torch through the C kernels (load_scan_lib first).
    S [B, L, Di, N] receives every state and is kept for the backward pass:
    the caller may reuse it only once that backward pass is done (reusing it
    saves the page faults of a fresh ~100 MB buffer per layer and step)."""
    assert _LIB is not None, "call load_scan_lib() first"
    return _FusedScan.apply(x, dt, A, bm, cm, S)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Mixer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, di, n, r, k = (cfg["hidden_size"], cfg["intermediate_size"], cfg["state_size"],
                          cfg["time_step_rank"], cfg["conv_kernel"])
        self.di, self.n, self.r, self.k = di, n, r, k
        self.in_proj = nn.Linear(d, 2 * di, bias=cfg["use_bias"])
        self.conv1d = nn.Conv1d(di, di, k, groups=di, padding=k - 1, bias=cfg["use_conv_bias"])
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=cfg["use_bias"])
        self.use_torch_scan = False
        self._states = None  # scan_fused's S, reused from step to step

    def forward(self, u):  # u: [B, L, d] -> [B, L, d]
        L = u.shape[1]
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2))  # [B, L, Di]
        dt_r, bm, cm = torch.split(self.x_proj(x), [self.r, self.n, self.n], dim=-1)
        dt = F.softplus(self.dt_proj(dt_r))  # [B, L, Di]
        A = -torch.exp(self.A_log)  # [Di, N]
        if _LIB is not None and not self.use_torch_scan:
            shape = (x.shape[0], L, self.di, self.n)
            if self._states is None or self._states.shape != shape:
                self._states = None
                self._states = x.new_empty(shape)
            y = scan_fused(x, dt, A, bm, cm, self._states)  # [B, L, Di]
        else:
            y = scan_torch(x, dt, A, bm, cm)
        y = (y + x * self.D) * F.silu(z)
        return self.out_proj(y)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg["hidden_size"], cfg["layer_norm_epsilon"])
        self.mixer = Mixer(cfg)

    def forward(self, h):
        return h + self.mixer(self.norm(h))


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm_f = RMSNorm(cfg["hidden_size"], cfg["layer_norm_epsilon"])


class MambaLM(nn.Module):
    """Tied-embedding Mamba-1 LM; forward(ids [B, L]) -> logits [B, L, V]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)

    def forward(self, ids):
        h = self.backbone.embeddings(ids)
        for layer in self.backbone.layers:
            h = layer(h)
        h = self.backbone.norm_f(h)
        return F.linear(h, self.backbone.embeddings.weight)


def hf_config(vocab_size, hidden_size, num_layers, state_size, expand=2, conv_kernel=4):
    """A complete transformers MambaConfig dict (every key written out)."""
    di = expand * hidden_size
    return {
        "architectures": ["MambaForCausalLM"],
        "model_type": "mamba",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "state_size": state_size,
        "expand": expand,
        "intermediate_size": di,
        "conv_kernel": conv_kernel,
        "time_step_rank": math.ceil(hidden_size / 16),
        "use_bias": False,
        "use_conv_bias": True,
        "hidden_act": "silu",
        "layer_norm_epsilon": 1e-5,
        "residual_in_fp32": True,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 1,  # <|end|>, the end-of-turn token (train_tokenizer.py)
        "pad_token_id": 0,
        "initializer_range": 0.1,
        "time_step_scale": 1.0,
        "time_step_min": 0.001,
        "time_step_max": 0.1,
        "time_step_init_scheme": "random",
        "time_step_floor": 1e-4,
        "rescale_prenorm_residual": False,
        "use_cache": True,
        "use_mambapy": False,
    }


def hf_init_(model, seed):
    """Initialises `model` exactly as transformers' MambaForCausalLM(config)
    does after torch.manual_seed(seed) (its _init_weights), by building that
    model and copying its state dict."""
    from transformers import MambaConfig, MambaForCausalLM
    torch.manual_seed(seed)
    ref = MambaForCausalLM(MambaConfig(**model.cfg))
    sd = {k: v for k, v in ref.state_dict().items() if k != "lm_head.weight"}
    model.load_state_dict(sd, strict=True)
