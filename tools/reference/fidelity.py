#!/usr/bin/env python3
"""Fidelity of dsserve's numerics against the DeepSeek-numerics reference (deepseek_numerics.py).

  fidelity.py tiny OUTDIR
      For tests/golden/tiny_v32_fp8 and tiny_v3_bf16 (sequence 0 of ref/tokens.json): checks the reference's
      transformers modes against the committed transformers logits, and writes the CI fixtures
      OUTDIR/<case>/{deepseek_fp8_0.npy, fidelity.json}.
  fidelity.py full CKPT --tokens IDS --dsserve DIR [--prompt IDS --greedy N --generated DIR] --out results.json
      Reference variants on CKPT (DeepSeek numerics, its 1-ulp noise, BF16-KV variant, fp32 modes), then every
      DIR/<variant>.npy written by `dsserve forward` compared with them; greedy agreement with
      DIR/<variant>.tokens (`dsserve generate` output) when asked. Prints a markdown table.

Measures (rows = positions): rel = max|a-b| / max|b|; kl = mean over positions of KL(P_ref || P) in nats;
top1 = fraction of positions with the same argmax; top5 = mean overlap of the two top-5 sets / 5.
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deepseek_numerics import Reference  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def measures(a, ref):
    a = torch.as_tensor(a).double().to(ref.device) if not torch.is_tensor(a) else a.double()
    r = ref.double()
    rel = float((a - r).abs().max() / r.abs().max())
    lp, lq = torch.log_softmax(r, -1), torch.log_softmax(a, -1)
    kl = float((lp.exp() * (lp - lq)).sum(-1).mean())
    top1 = float((a.argmax(-1) == r.argmax(-1)).double().mean())
    ta, tr = a.topk(5, -1).indices, r.topk(5, -1).indices
    top5 = float((ta[:, :, None] == tr[:, None, :]).any(-1).double().sum(-1).mean() / 5)
    return {"rel": rel, "kl": kl, "top1": top1, "top5": top5}


def fmt(m):
    return f"{m['rel']:.3g} | {m['kl']:.3g} | {100 * m['top1']:.1f}% | {100 * m['top5']:.1f}%"


def reference_runs(ref, tokens):
    """The reference variants: name -> logits tensor."""
    out = {}
    for name, numerics, seed in [("transformers", "transformers", None), ("transformers-idx8", "transformers-idx8", None),
                                 ("deepseek", "deepseek", None), ("deepseek+ulp1", "deepseek", 1),
                                 ("deepseek+ulp2", "deepseek", 2), ("deepseek-bf16kv", "deepseek-bf16kv", None),
                                 ("transformers+ulp1", "transformers", 1)]:
        t0 = time.time()
        out[name] = ref.forward(tokens, numerics, seed).float()
        print(f"reference {name}: {time.time() - t0:.2f} s", flush=True)
    return out


def noise_rows(R):
    rows = {
        "deepseek vs deepseek+ulp1 (reference noise)": measures(R["deepseek+ulp1"], R["deepseek"]),
        "deepseek vs deepseek+ulp2 (reference noise)": measures(R["deepseek+ulp2"], R["deepseek"]),
        "transformers vs transformers+ulp1 (fp32 noise)": measures(R["transformers+ulp1"], R["transformers"]),
        "deepseek-bf16kv vs deepseek (FP8 vs BF16 latent)": measures(R["deepseek-bf16kv"], R["deepseek"]),
        "transformers-idx8 vs deepseek (fp32 math vs DeepSeek's)": measures(R["transformers-idx8"], R["deepseek"]),
        "transformers vs transformers-idx8 (fp32 vs FP8 indexer)": measures(R["transformers"], R["transformers-idx8"]),
    }
    return rows


def check_e4m3():
    """The reference's arithmetic e4m3 rounding against torch's own float8 cast (where torch has one)."""
    from deepseek_numerics import e4m3_rne
    if not hasattr(torch, "float8_e4m3fn"):
        return "torch has no float8: not checked"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1 << 20, generator=g) * torch.exp2(torch.randint(-14, 10, (1 << 20,), generator=g).float())
    x = x.clamp(-448, 448)
    bad = int((e4m3_rne(x) != x.to(torch.float8_e4m3fn).float()).sum())
    return f"{bad} of {x.numel()} differ from torch's float8 cast"


def cmd_tiny(args):
    print("e4m3 rounding:", check_e4m3())
    for case in ["tiny_v32_fp8", "tiny_v3_bf16"]:
        d = os.path.join(ROOT, "tests/golden", case)
        tokens = json.load(open(os.path.join(d, "ref/tokens.json")))["sequences"][0]
        ref = Reference(d)
        R = reference_runs(ref, tokens)
        checks = {}
        for mode, name in [("fp32", "transformers"), ("fp8", "transformers-idx8")]:
            f = os.path.join(d, f"ref/logits_{mode}_0.npy")
            if os.path.exists(f):
                g = torch.from_numpy(np.load(f)).to(R[name].device)
                checks[f"{name} vs transformers logits_{mode}_0"] = measures(R[name], g)
        out = os.path.join(args.out, case)
        os.makedirs(out, exist_ok=True)
        np.save(os.path.join(out, "deepseek_fp8_0.npy"), R["deepseek"].cpu().numpy())
        np.save(os.path.join(out, "deepseek_fp8_ulp1_0.npy"), R["deepseek+ulp1"].cpu().numpy())
        info = {"sequence": 0, "tokens": len(tokens), "numerics": "deepseek (tools/reference/deepseek_numerics.py)",
                "torch": torch.__version__, "device": str(ref.dev), "checks": checks, "noise": noise_rows(R)}
        json.dump(info, open(os.path.join(out, "fidelity.json"), "w"), indent=1)
        print(f"== {case}")
        for k, m in {**checks, **info["noise"]}.items():
            print(f"| {k} | {fmt(m)} |")


def read_tokens(path):
    txt = open(path).read().strip().splitlines()
    txt = [l for l in txt if l and l[0].isdigit()]
    return [int(t) for t in txt[-1].split(",")] if txt else []


def agreement(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    same = sum(x == y for x, y in zip(a, b))
    return {"first_divergence": n, "same_position": same, "compared": min(len(a), len(b))}


def cmd_full(args):
    tokens = [int(t) for t in args.tokens.split(",")]
    t0 = time.time()
    ref = Reference(args.ckpt)
    print(f"reference loaded in {time.time() - t0:.1f} s", flush=True)
    R = reference_runs(ref, tokens)
    res = {"tokens": len(tokens), "noise": noise_rows(R), "dsserve": {}, "greedy": {}}
    for f in sorted(glob.glob(os.path.join(args.dsserve, "*.npy"))):
        name = os.path.basename(f)[:-4]
        a = torch.from_numpy(np.load(f)).to(ref.dev)
        row = {"vs deepseek": measures(a, R["deepseek"]), "vs deepseek-bf16kv": measures(a, R["deepseek-bf16kv"]),
               "vs transformers-idx8": measures(a, R["transformers-idx8"])}
        # Each dsserve run against the exact path; runs on a BF16 latent cache also against the exact path
        # on that cache (only_bf16_kv), which isolates what they add to it.
        for base in ["exact"] + (["only_bf16_kv"] if name.startswith("bf16_kv_") else []):
            ex = os.path.join(args.dsserve, base + ".npy")
            if os.path.exists(ex):
                row["vs dsserve " + base] = measures(a, torch.from_numpy(np.load(ex)).to(ref.dev))
        res["dsserve"][name] = row
    if args.greedy:
        prompt = [int(t) for t in args.prompt.split(",")]
        eos = ref.cfg.get("eos_token_id")
        eos = set(eos if isinstance(eos, list) else [eos]) if eos is not None else None
        t0 = time.time()
        g_ref = ref.greedy(prompt, args.greedy, "deepseek", eos)
        print(f"reference greedy {len(g_ref)} tokens: {time.time() - t0:.1f} s", flush=True)
        res["greedy"]["reference tokens"] = g_ref
        ref_noise = []
        toks = list(prompt)  # the reference with a perturbed input, greedy: its own divergence
        for _ in range(args.greedy):
            nxt = int(ref.forward(toks, "deepseek", 1, last_only=True)[-1].argmax())
            ref_noise.append(nxt)
            toks.append(nxt)
            if eos and nxt in eos:
                break
        res["greedy"]["deepseek+ulp1"] = agreement(ref_noise, g_ref)
        for f in sorted(glob.glob(os.path.join(args.dsserve, "*.tokens"))):
            res["greedy"][os.path.basename(f)[:-7]] = agreement(read_tokens(f), g_ref)
    json.dump(res, open(args.out, "w"), indent=1)
    print("\n| comparison | rel err | mean KL (nats) | argmax agree | top-5 overlap |\n|---|---|---|---|---|")
    for k, m in res["noise"].items():
        print(f"| {k} | {fmt(m)} |")
    for name, row in res["dsserve"].items():
        for k, m in row.items():
            print(f"| dsserve {name} {k} | {fmt(m)} |")
    for k, v in res["greedy"].items():
        if k != "reference tokens":
            print(f"greedy {k} vs reference: {v}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiny")
    t.add_argument("out")
    f = sub.add_parser("full")
    f.add_argument("ckpt")
    f.add_argument("--tokens", required=True)
    f.add_argument("--dsserve", required=True)
    f.add_argument("--prompt")
    f.add_argument("--greedy", type=int, default=0)
    f.add_argument("--out", required=True)
    a = ap.parse_args()
    cmd_tiny(a) if a.cmd == "tiny" else cmd_full(a)


if __name__ == "__main__":
    main()
