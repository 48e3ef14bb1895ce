#!/usr/bin/env python3
"""An independent reference of DeepSeek-V3.2's inference numerics, in PyTorch (docs/FIDELITY-REFERENCE.md).

The model is the one transformers' DeepseekV32 / DeepseekV3 defines (same layers, YaRN RoPE, MLA, lightning
indexer, sigmoid group-limited routing); the arithmetic is chosen by a `Numerics` preset:

  transformers      fp32 everywhere, FP8 weights dequantised exactly, transformers' fp32 indexer.
  transformers-idx8 the same with DeepSeek's FP8 indexer (Hadamard + e4m3 q/k): dsserve's `--indexer fp8`.
  deepseek          DeepSeek's inference code (DeepSeek-V3.2-Exp inference/model.py + kernel.py, the version
                    after the 2025-11-17 indexer fix): BF16 activations between ops, every FP8-weight GEMM
                    with its input quantised per token per 128 columns to e4m3 (ue8m0 power-of-two scales
                    when the config's scale_fmt says so), fp32 accumulation, BF16 out; the MLA latent rounded
                    through FP8 before it is cached (DeepSeek's simulation of its FP8 KV cache); BF16 residual.
  deepseek-bf16kv   the same with the latent kept in BF16 (SGLang's default KV cache on H200).

Every tensor is held in fp32 and rounded to BF16 / FP8 exactly where DeepSeek's code rounds (the values are
those of DeepSeek's dtypes; only the order of fp32 additions may differ). TF32 is off.
Usable as a module (Reference) or as a script: deepseek_numerics.py CKPT --numerics deepseek --tokens 1,2,3 --out x.npy
"""
import argparse
import glob
import json
import math
import mmap
import os
import struct
from dataclasses import dataclass

import torch
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_grad_enabled(False)

FP8_MAX = 448.0


@dataclass(frozen=True)
class Numerics:
    name: str
    bf16_acts: bool      # activations rounded to BF16 between ops (DeepSeek's default dtype)
    fp8_act: bool        # FP8-weight GEMMs take e4m3 activations (1 x 128 groups)
    idx_fp8: bool        # indexer q/k: Hadamard rotation, then e4m3 per 128-vector with power-of-two scales
    latent: str          # MLA latent before caching: "keep" (as computed) or "fp8" (quantised and back)


PRESETS = {
    "transformers": Numerics("transformers", False, False, False, "keep"),
    "transformers-idx8": Numerics("transformers-idx8", False, False, True, "keep"),
    "deepseek": Numerics("deepseek", True, True, True, "fp8"),
    "deepseek-bf16kv": Numerics("deepseek-bf16kv", True, True, True, "keep"),
}


def pow2_ceil(r):
    """2^ceil(log2 r) for r > 0, as DeepSeek's kernel takes it from the float's exponent bits."""
    m, e = torch.frexp(r)
    return torch.ldexp(torch.ones_like(r), torch.where(m == 0.5, e - 1, e))


def e4m3_rne(x):
    """x (|x| <= 448) rounded to the nearest e4m3fn value, ties to even: 3 mantissa bits, normal exponents
    down to 2^-6, below that the subnormal step 2^-9. Arithmetic, so that it does not depend on the torch
    version's float8 support (fidelity.py checks it against torch's own cast where that exists)."""
    a = x.abs()
    _, k = torch.frexp(a)  # a = m * 2^k, m in [0.5, 1): exponent k - 1
    quantum = torch.ldexp(torch.ones_like(a), (k - 1).clamp(min=-6) - 3)
    return torch.sign(x) * torch.round(a / quantum) * quantum


def e4m3_decode_table():
    v = []
    for b in range(256):
        s, e, m = -1.0 if b & 0x80 else 1.0, (b >> 3) & 15, b & 7
        v.append(float("nan") if (e == 15 and m == 7) else s * (m / 8 * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7)))
    return torch.tensor(v, dtype=torch.float32)


def read_safetensors(path, dev):
    """name -> (dtype string, fp32 tensor on dev) for F8_E4M3 (decoded by table), BF16, F16 and F32."""
    out = {}
    lut = e4m3_decode_table().to(dev)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = struct.unpack("<Q", mm[:8])[0]
    header = json.loads(mm[8:8 + n])
    buf = torch.frombuffer(mm, dtype=torch.uint8)
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = buf[8 + n + a:8 + n + b].to(dev, copy=True)  # a copy: aligned for the dtype views
        dt, shape = info["dtype"], info["shape"]
        if dt == "F8_E4M3":
            t = lut[raw.long()]
        elif dt == "BF16":
            t = (raw.view(torch.int16).to(torch.int32) << 16).view(torch.float32)
        elif dt == "F16":
            t = raw.view(torch.float16).float()
        elif dt == "F32":
            t = raw.view(torch.float32).clone()
        else:
            raise ValueError(f"{path}: {name} has dtype {dt}")
        out[name] = (dt, t.view(shape))
    return out


def fp8_round(x, group, pow2):
    """Dequantised e4m3 value of x, one scale per `group` consecutive values of the last dimension
    (a last group narrower than `group` gets its own scale): amax clamped to 1e-4, scale amax * (1/448)
    (rounded up to a power of two when pow2), x / scale clamped to +-448 and rounded to nearest even."""
    shape, K = x.shape, x.shape[-1]
    pad = (-K) % group
    xp = F.pad(x.reshape(-1, K), (0, pad)).view(-1, (K + pad) // group, group)
    amax = xp.abs().amax(-1, keepdim=True).clamp(min=1e-4)
    r = amax * torch.tensor(1.0 / FP8_MAX, dtype=torch.float32)
    s = pow2_ceil(r) if pow2 else r
    q = e4m3_rne((xp / s).clamp(-FP8_MAX, FP8_MAX)) * s
    return q.view(-1, K + pad)[:, :K].reshape(shape)


def hadamard(x):
    """Sylvester (natural-order) Hadamard transform of the last dimension, scaled by D^-1/2."""
    D = x.shape[-1]
    Hm = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    while Hm.shape[0] < D:
        Hm = torch.cat([torch.cat([Hm, Hm], 1), torch.cat([Hm, -Hm], 1)], 0)
    return (x @ Hm) * (D ** -0.5)


def rope_interleaved(x, cos, sin):
    """Pairs (x[2i], x[2i+1]) rotated (MLA). x [T, ..., d]; cos/sin [T, d/2] broadcast over the middle."""
    c, s = _bcast(cos, x), _bcast(sin, x)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)


def rope_half(x, cos, sin):
    """Pairs (x[i], x[i + d/2]) rotated (the indexer, since DeepSeek's 2025-11-17 fix)."""
    c, s = _bcast(cos, x), _bcast(sin, x)
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return torch.cat([a * c - b * s, a * s + b * c], -1)


def _bcast(t, x):
    return t.view(t.shape[0], *([1] * (x.dim() - 2)), t.shape[1])


class Reference:
    def __init__(self, ckpt, device=None):
        self.dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.cfg = json.load(open(os.path.join(ckpt, "config.json")))
        c = self.cfg
        q = c.get("quantization_config") or {}
        self.ue8m0 = q.get("scale_fmt") == "ue8m0"
        self.has_indexer = c["model_type"] == "deepseek_v32"
        self.w, self.fp8 = {}, set()
        N = c["num_hidden_layers"]
        for path in sorted(glob.glob(os.path.join(ckpt, "*.safetensors"))):
            raw = read_safetensors(path, self.dev)
            for name, (dt, t) in raw.items():
                if name.endswith("_scale_inv") or name.startswith(f"model.layers.{N}."):
                    continue  # block scales (folded below); the MTP layer (not in DeepSeek's inference code)
                if dt == "F8_E4M3":  # value = e4m3 x scale_inv of its 128 x 128 block, rounded to fp32
                    s = raw[name + "_scale_inv"][1]
                    rows, cols = t.shape
                    t = t * s.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
                    self.fp8.add(name)
                self.w[name] = t
            del raw
        self._rope_setup()

    # ---------------------------------------------------------------- config-derived constants
    def _rope_setup(self):
        c = self.cfg
        rs = c.get("rope_scaling") or c.get("rope_parameters") or {}
        self.theta = float(c.get("rope_theta") or rs.get("rope_theta", 10000.0))
        d = c["qk_rope_head_dim"]
        pos_freqs = self.theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d)
        inv = 1.0 / pos_freqs
        kind = rs.get("rope_type", rs.get("type"))
        self.scale = (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
        if kind == "yarn":
            factor = float(rs["factor"])
            orig = float(rs.get("original_max_position_embeddings", c.get("max_position_embeddings")))
            bf, bs = float(rs.get("beta_fast", 32)), float(rs.get("beta_slow", 1))
            corr = lambda n: d * math.log(orig / (n * 2 * math.pi)) / (2 * math.log(self.theta))
            low, high = max(math.floor(corr(bf)), 0), min(math.ceil(corr(bs)), d - 1)
            if low == high:
                high += 0.001
            ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
            extra = 1 - ramp
            inv = (inv / factor) * (1 - extra) + inv * extra
            msc = rs.get("mscale_all_dim", 0)
            if msc and factor > 1:
                m = 0.1 * msc * math.log(factor) + 1.0
                self.scale *= m * m
        self.inv_freq = inv.to(self.dev)

    def rope_tables(self, T):
        ang = torch.arange(T, dtype=torch.float32, device=self.dev)[:, None] * self.inv_freq[None, :]
        return ang.cos(), ang.sin()

    # ---------------------------------------------------------------- building blocks
    def rb(self, x):
        return x.to(torch.bfloat16).float() if self.N.bf16_acts else x

    def lin(self, x, name):
        W = self.w[name + ".weight"]
        if self.N.fp8_act and (name + ".weight") in self.fp8:
            x = fp8_round(x, 128, self.ue8m0)
        return self.rb(x @ W.T)

    def rms(self, x, name):
        w = self.w[name + ".weight"]
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["rms_norm_eps"])
        return self.rb(w * y)

    def mlp(self, p, x):
        g, u = self.lin(x, p + "gate_proj"), self.lin(x, p + "up_proj")
        return self.lin(self.rb(F.silu(g) * u), p + "down_proj")

    def moe(self, p, x):
        c = self.cfg
        T, E = x.shape[0], c["n_routed_experts"]
        s = torch.sigmoid(x @ self.w[p + "gate.weight"].T)  # fp32 router (DeepSeek: fp32 weight and input)
        b = s + self.w[p + "gate.e_score_correction_bias"]
        G = c["n_group"]
        grp = b.view(T, G, E // G).topk(2, -1).values.sum(-1)
        keep = torch.zeros(T, G, dtype=torch.bool, device=self.dev).scatter_(1, grp.topk(c["topk_group"], -1).indices, True)
        b = b.view(T, G, E // G).masked_fill(~keep[..., None], float("-inf")).view(T, E)
        sel = b.topk(c["num_experts_per_tok"], -1).indices
        wts = s.gather(1, sel)
        if c.get("norm_topk_prob", True):
            wts = wts / (wts.sum(-1, keepdim=True) + 1e-20)
        wts = wts * c["routed_scaling_factor"]
        y = torch.zeros_like(x)
        for e in sel.unique().tolist():
            rows, slot = torch.where(sel == e)
            y.index_add_(0, rows, self.mlp(f"{p}experts.{e}.", x[rows]) * wts[rows, slot, None])
        if c.get("n_shared_experts", 0):
            y = y + self.mlp(p + "shared_experts.", x)
        return self.rb(y)

    def indexer(self, p, x, q_lat, cos, sin):
        c = self.cfg
        T, Hi, Di, Dr = x.shape[0], c["index_n_heads"], c["index_head_dim"], c["qk_rope_head_dim"]
        qi = self.lin(q_lat, p + "wq_b").view(T, Hi, Di)
        qi = torch.cat([self.rb(rope_half(qi[..., :Dr], cos, sin)), qi[..., Dr:]], -1)
        ki = self.lin(x, p + "wk")
        ki = self.rb(F.layer_norm(ki, (Di,), self.w[p + "k_norm.weight"], self.w[p + "k_norm.bias"], 1e-6))
        ki = torch.cat([self.rb(rope_half(ki[:, :Dr], cos, sin)), ki[:, Dr:]], -1)
        if self.N.idx_fp8:
            # One scale per head vector (DeepSeek: per 128 values = per head at index_head_dim 128).
            qi = fp8_round(self.rb(hadamard(qi)), Di, True)
            ki = fp8_round(self.rb(hadamard(ki)), Di, True)
        w = (x @ self.w[p + "weights_proj.weight"].T) * Hi ** -0.5  # fp32 (DeepSeek: fp32 weight, x.float())
        s = torch.relu(torch.einsum("shd,td->sht", qi, ki)) * Di ** -0.5
        score = torch.einsum("sh,sht->st", w, s)
        causal = torch.ones(T, T, dtype=torch.bool, device=self.dev).tril()
        score = score.masked_fill(~causal, float("-inf"))
        k = min(c["index_topk"], T)
        idx = score.topk(k, -1).indices
        return torch.zeros(T, T, dtype=torch.bool, device=self.dev).scatter_(1, idx, True) & causal

    def attention(self, p, x, cos, sin):
        c = self.cfg
        T, H = x.shape[0], c["num_attention_heads"]
        Dn, Dr, Dv, Dl = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
        q_lat = self.rms(self.lin(x, p + "q_a_proj"), p + "q_a_layernorm")
        q = self.lin(q_lat, p + "q_b_proj").view(T, H, Dn + Dr)
        q = torch.cat([q[..., :Dn], self.rb(rope_interleaved(q[..., Dn:], cos, sin))], -1)
        kv = self.lin(x, p + "kv_a_proj_with_mqa")
        lat = self.rms(kv[:, :Dl], p + "kv_a_layernorm")
        k_pe = self.rb(rope_interleaved(kv[:, Dl:], cos, sin))
        if self.N.latent == "fp8":
            lat = self.rb(fp8_round(lat, 128, self.ue8m0))
        # DeepSeek's prefill form: per-head K/V expanded from the (cached) latent by kv_b (an FP8 GEMM).
        kvb = self.lin(lat, p + "kv_b_proj").view(T, H, Dn + Dv)
        k = torch.cat([kvb[..., :Dn], k_pe[:, None, :].expand(T, H, Dr)], -1)
        v = kvb[..., Dn:]
        scores = self.rb(self.rb(torch.einsum("shd,thd->sht", q, k)) * self.scale)
        if self.has_indexer:
            allowed = self.indexer(p + "indexer.", x, q_lat, cos, sin)
        else:
            allowed = torch.ones(T, T, dtype=torch.bool, device=self.dev).tril()
        scores = scores.masked_fill(~allowed[:, None, :], float("-inf"))
        prob = self.rb(torch.softmax(scores, -1))
        o = self.rb(torch.einsum("sht,thd->shd", prob, v))
        return self.lin(o.reshape(T, H * Dv), p + "o_proj")

    # ---------------------------------------------------------------- the model
    def forward(self, tokens, numerics, perturb_seed=None, last_only=False):
        """Logits [T, V] of every position of one sequence (prefill from position 0); [1, V] if last_only."""
        self.N = PRESETS[numerics] if isinstance(numerics, str) else numerics
        c = self.cfg
        ids = torch.as_tensor(tokens, device=self.dev)
        h = self.w["model.embed_tokens.weight"][ids]
        if perturb_seed is not None:
            h = perturb_one_ulp(h, perturb_seed)
        T = h.shape[0]
        cos, sin = self.rope_tables(T)
        residual = None
        for L in range(c["num_hidden_layers"]):
            p = f"model.layers.{L}."
            if residual is None:
                residual, x = h, self.rms(h, p + "input_layernorm")
            else:
                s = h + residual
                residual, x = self.rb(s), self.rms(s, p + "input_layernorm")
            h = self.attention(p + "self_attn.", x, cos, sin)
            s = h + residual
            residual, x = self.rb(s), self.rms(s, p + "post_attention_layernorm")
            h = self.moe(p + "mlp.", x) if L >= c.get("first_k_dense_replace", 0) else self.mlp(p + "mlp.", x)
        final = self.rms(h + residual, "model.norm")
        if last_only:
            final = final[-1:]
        return final @ self.w["lm_head.weight"].T  # fp32 head (DeepSeek: fp32 weight, BF16-valued input)

    def greedy(self, prompt, n, numerics, eos=None):
        """n greedy tokens, each from a full forward of the sequence so far (prefill numerics every step)."""
        toks = list(prompt)
        out = []
        for _ in range(n):
            nxt = int(self.forward(toks, numerics, last_only=True)[-1].argmax())
            out.append(nxt)
            toks.append(nxt)
            if eos is not None and nxt in eos:
                break
        return out


def perturb_one_ulp(h, seed):
    """Each element moved by one BF16 ulp, up or down in magnitude at random: the smallest change of the
    model's input in DeepSeek's activation format (embeddings are BF16 values)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    step = (torch.randint(0, 2, h.shape, generator=g) * 2 - 1).to(torch.int16).to(h.device)
    bits = h.to(torch.bfloat16).view(torch.int16)
    bits = torch.where(bits & 0x7FFF == 0, bits + (step > 0).to(torch.int16), bits + step)
    return bits.view(torch.bfloat16).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--numerics", default="deepseek", choices=sorted(PRESETS))
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--out", required=True, help=".npy of float32 [T, vocab]")
    ap.add_argument("--perturb-seed", type=int)
    a = ap.parse_args()
    import numpy as np
    ref = Reference(a.ckpt)
    logits = ref.forward([int(t) for t in a.tokens.split(",")], a.numerics, a.perturb_seed)
    np.save(a.out, logits.float().cpu().numpy())


if __name__ == "__main__":
    main()
