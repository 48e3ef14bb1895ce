#!/usr/bin/env python3
"""Reference token ids from the Hugging Face `tokenizers` library (run on the GPU machine image).

usage: tokenizer_ids.py TOKENIZER_JSON CORPUS_JSON OUT_JSON
Writes [{"text": t, "ids": [...], "decoded": d}] with add_special_tokens=False (dsserve tokenize
never adds BOS), then times single-threaded encode on the same corpus for docs/PERF.md.
"""
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import tokenizers  # noqa: E402

tok = tokenizers.Tokenizer.from_file(sys.argv[1])
corpus = json.load(open(sys.argv[2], encoding="utf-8"))
out = []
for text in corpus:
    ids = tok.encode(text, add_special_tokens=False).ids
    out.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
with open(sys.argv[3], "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False)

# Throughput, single thread, one encode() call per text, the whole corpus repeated.
total_bytes = sum(len(t.encode("utf-8")) for t in corpus)
reps = 20
t0 = time.perf_counter()
for _ in range(reps):
    for text in corpus:
        tok.encode(text, add_special_tokens=False)
dt = time.perf_counter() - t0
print(f"tokenizers {tokenizers.__version__}: corpus {len(corpus)} texts, {total_bytes} bytes; "
      f"encode {reps * total_bytes / dt / 1e6:.2f} MB/s single-threaded")
big = "".join(corpus)
while len(big.encode("utf-8")) < (1 << 20):
    big += "".join(corpus)
t0 = time.perf_counter()
n = len(tok.encode(big, add_special_tokens=False).ids)
print(f"1 MiB-plus text ({len(big.encode('utf-8'))} bytes) -> {n} tokens in {time.perf_counter() - t0:.3f} s")
