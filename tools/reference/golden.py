#!/usr/bin/env python3
"""Reference logits for dsserve's golden tests, from transformers' DeepseekV32/V3 implementation.

usage: golden.py CHECKPOINT_DIR OUT_DIR [--seqs 40,23,64] [--seed 0]

Runs on the GPU machine image (transformers 5.17, torch 2.11) — on its CPU, in float32.
  * FP8 weights are dequantised exactly (e4m3 value x weight_scale_inv of its 128x128 block) and
    loaded into DeepseekV32ForCausalLM / DeepseekV3ForCausalLM built in float32, eager attention.
  * logits_fp32_<i>.npy : the model's logits for token sequence i (transformers' fp32 indexer).
  * logits_fp8_<i>.npy  : the same with DeepSeek's FP8 indexer numerics patched in (Hadamard rotation,
    e4m3 q/k with power-of-two scales per 128-vector, per head for q, per token for k).
  * hidden_<i>.npy      : the final-norm hidden states (the MTP input).
  * mtp_logits_<i>.npy  : the MTP layer (model.layers.N.*) composed from transformers' decoder layer:
    logits for positions 0..T-2 from (hidden[t], token[t+1]) as DeepSeek's MTP defines it.
  * tokens.json         : the sequences.
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

import transformers
from transformers import AutoConfig

torch.set_grad_enabled(False)
torch.manual_seed(0)


def load_state(ckpt):
    raw = {}
    for f in sorted(glob.glob(os.path.join(ckpt, "*.safetensors"))):
        raw.update(load_file(f))
    sd = {}
    for name, t in raw.items():
        if name.endswith("_scale_inv"):
            continue
        if t.dtype == torch.float8_e4m3fn:
            s = raw[name + "_scale_inv"].float()
            rows, cols = t.shape
            full = s.repeat_interleave(128, 0).repeat_interleave(128, 1)[:rows, :cols]
            sd[name] = t.float() * full
        else:
            sd[name] = t.float()
    return sd


def fuse_experts(sd, cfg, layer_prefixes):
    """transformers keeps experts as fused 3-D parameters: gate_up_proj [E, 2I, H], down_proj [E, H, I]."""
    for p in layer_prefixes:
        if p + "mlp.experts.0.gate_proj.weight" not in sd:
            continue
        E = cfg.n_routed_experts
        gate_up = [torch.cat([sd.pop(f"{p}mlp.experts.{e}.gate_proj.weight"), sd.pop(f"{p}mlp.experts.{e}.up_proj.weight")], 0) for e in range(E)]
        down = [sd.pop(f"{p}mlp.experts.{e}.down_proj.weight") for e in range(E)]
        sd[p + "mlp.experts.gate_up_proj"] = torch.stack(gate_up)
        sd[p + "mlp.experts.down_proj"] = torch.stack(down)


def hadamard_fp8_round(x):
    """DeepSeek's indexer numerics in float32: Sylvester Hadamard (butterflies, natural order) scaled by
    D^-1/2, then e4m3 with one power-of-two scale per 128-vector (amax clamped to 1e-4)."""
    D = x.shape[-1]
    y = x.reshape(-1, D).clone()
    h = 1
    while h < D:
        y = y.view(-1, D // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack([a + b, a - b], dim=2).view(-1, D)
        h *= 2
    y = y * torch.tensor(1.0 / math.sqrt(D), dtype=torch.float32)
    amax = y.abs().amax(-1, keepdim=True).clamp(min=1e-4)
    m, e = torch.frexp(amax / 448.0)
    scale = torch.ldexp(torch.ones_like(amax), torch.where(m == 0.5, e - 1, e))
    q = (y / scale).to(torch.float8_e4m3fn).float() * scale
    return q.view(x.shape)


def patch_fp8_indexer():
    from transformers.models.deepseek_v32 import modeling_deepseek_v32 as mod
    orig_matmul = torch.matmul

    cls = mod.DeepseekV32Indexer
    orig_forward = cls.forward

    def forward(self, hidden_states, q_resid, position_embeddings, attention_mask, position_ids, past_key_values=None):
        # Same as transformers' indexer, with q and k rounded through DeepSeek's FP8 path after RoPE.
        B, S, _ = hidden_states.shape
        cos, sin = position_embeddings
        q = self.wq_b(q_resid).view(B, S, self.n_heads, self.head_dim)
        q_rot, q_pass = torch.split(q, [self.qk_rope_head_dim, self.head_dim - self.qk_rope_head_dim], dim=-1)
        k = self.k_norm(self.wk(hidden_states)).unsqueeze(2)
        k_rot, k_pass = torch.split(k, [self.qk_rope_head_dim, self.head_dim - self.qk_rope_head_dim], dim=-1)
        q_rot, k_rot = mod.apply_rotary_pos_emb(q_rot, k_rot, cos, sin, unsqueeze_dim=2)
        q = hadamard_fp8_round(torch.cat([q_rot, q_pass], dim=-1))
        k = hadamard_fp8_round(torch.cat([k_rot, k_pass], dim=-1).squeeze(2))
        scores = torch.relu(orig_matmul(q.float(), k.transpose(-1, -2).float().unsqueeze(1)) * self.softmax_scale)
        weights = self.weights_proj(hidden_states.float()).float() * (self.n_heads ** -0.5)
        index_scores = orig_matmul(weights.unsqueeze(-2), scores).squeeze(-2)
        if attention_mask.dtype == torch.bool:
            index_scores = index_scores.masked_fill(~attention_mask, float("-inf"))
        else:
            index_scores = index_scores + attention_mask
        topk = min(self.index_topk, index_scores.shape[-1])
        return index_scores.topk(topk, dim=-1).indices.to(torch.int32)

    cls.forward = forward
    return lambda: setattr(cls, "forward", orig_forward)


def causal_mask(S):
    m = torch.full((S, S), torch.finfo(torch.float32).min)
    return torch.triu(m, diagonal=1)[None, None]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--seqs", default="40,23,64")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    cfg = AutoConfig.from_pretrained(args.ckpt)
    if getattr(cfg, "quantization_config", None) is not None:
        del cfg.quantization_config
    cfg._attn_implementation = "eager"
    cfg.torch_dtype = torch.float32
    is_v32 = cfg.model_type == "deepseek_v32"
    Model = transformers.DeepseekV32ForCausalLM if is_v32 else transformers.DeepseekV3ForCausalLM
    model = Model(cfg).float().eval()

    sd = load_state(args.ckpt)
    N = cfg.num_hidden_layers
    mtp_prefix = f"model.layers.{N}."
    mtp_sd = {k[len(mtp_prefix):]: v for k, v in sd.items() if k.startswith(mtp_prefix)}
    sd = {k: v for k, v in sd.items() if not k.startswith(mtp_prefix)}
    fuse_experts(sd, cfg, [f"model.layers.{l}." for l in range(N)])
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "inv_freq" not in m]
    if missing or unexpected:
        sys.exit(f"state dict mismatch: missing {missing[:10]} unexpected {unexpected[:10]}")

    rng = np.random.default_rng(args.seed)
    lens = [int(x) for x in args.seqs.split(",")]
    seqs = [rng.integers(2, cfg.vocab_size, size=n).tolist() for n in lens]
    json.dump({"sequences": seqs, "transformers": transformers.__version__, "torch": torch.__version__},
              open(os.path.join(args.out, "tokens.json"), "w"))

    modes = ["fp32", "fp8"] if is_v32 else ["fp32"]
    for mode in modes:
        undo = patch_fp8_indexer() if mode == "fp8" else None
        for i, s in enumerate(seqs):
            ids = torch.tensor([s])
            out = model(input_ids=ids, use_cache=False, output_hidden_states=True)
            np.save(os.path.join(args.out, f"logits_{mode}_{i}.npy"), out.logits[0].float().numpy())
            if mode == "fp32":
                hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state[0]
                np.save(os.path.join(args.out, f"hidden_{i}.npy"), hidden.numpy())
        if undo:
            undo()
    print(f"{cfg.model_type}: logits for {len(seqs)} sequences, modes {modes}")

    if not mtp_sd:
        return
    # MTP: enorm/hnorm/eh_proj + one decoder layer (MoE, with its own indexer) + shared_head.
    mod = sys.modules[Model.__module__]
    Layer = mod.DeepseekV32DecoderLayer if is_v32 else mod.DeepseekV3DecoderLayer
    moe_layer = N - 1  # any MoE layer index: selects the MoE FFN; there is no cache here
    layer = Layer(cfg, layer_idx=moe_layer).float().eval()
    lsd = {k: v for k, v in mtp_sd.items() if not k.split(".")[0] in ("enorm", "hnorm", "eh_proj", "shared_head", "embed_tokens")}
    fuse_experts(lsd, cfg, [""])
    miss, unexp = layer.load_state_dict(lsd, strict=False)
    if miss or unexp:
        sys.exit(f"MTP layer state mismatch: missing {miss[:10]} unexpected {unexp[:10]}")
    H = cfg.hidden_size
    enorm = mod.DeepseekV32RMSNorm(H, cfg.rms_norm_eps) if is_v32 else mod.DeepseekV3RMSNorm(H, cfg.rms_norm_eps)
    hnorm = type(enorm)(H, cfg.rms_norm_eps)
    head_norm = type(enorm)(H, cfg.rms_norm_eps)
    enorm.weight.copy_(mtp_sd["enorm.weight"])
    hnorm.weight.copy_(mtp_sd["hnorm.weight"])
    head_norm.weight.copy_(mtp_sd["shared_head.norm.weight"])
    eh = mtp_sd["eh_proj.weight"]
    head = mtp_sd.get("shared_head.head.weight", sd["lm_head.weight"])
    for i, s in enumerate(seqs):
        ids = torch.tensor([s])
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state  # [1, T, H], final-norm output
        T = len(s)
        nxt = ids[:, 1:]
        h = hidden[:, : T - 1]
        e = model.model.embed_tokens(nxt)
        u = torch.cat([enorm(e), hnorm(h)], dim=-1) @ eh.T
        pos = torch.arange(T - 1)[None]
        pe = model.model.rotary_emb(u, pos)
        mask = causal_mask(T - 1)
        out = layer(u, attention_mask=mask, position_embeddings=pe, position_ids=pos, past_key_values=None)
        if isinstance(out, tuple):
            out = out[0]
        logits = head_norm(out) @ head.T
        np.save(os.path.join(args.out, f"mtp_logits_{i}.npy"), logits[0].numpy())
    print("MTP logits written")




def saved_names(ckpt, out):
    """What transformers' own save_pretrained writes for this model (names/dtypes), for loader checks."""
    import tempfile
    cfg = AutoConfig.from_pretrained(ckpt)
    if getattr(cfg, "quantization_config", None) is not None:
        del cfg.quantization_config
    Model = transformers.DeepseekV32ForCausalLM if cfg.model_type == "deepseek_v32" else transformers.DeepseekV3ForCausalLM
    m = Model(cfg).to(torch.bfloat16)
    with tempfile.TemporaryDirectory() as d:
        m.save_pretrained(d)
        names = []
        for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
            names += [f"{k} {tuple(v.shape)} {v.dtype}" for k, v in load_file(f).items()]
    open(os.path.join(out, "transformers_saved_names.txt"), "w").write("\n".join(sorted(names)) + "\n")


if __name__ == "__main__":
    main()
    if os.environ.get("SAVED_NAMES"):
        saved_names(sys.argv[1], sys.argv[2])
