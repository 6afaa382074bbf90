#!/usr/bin/env python3
"""Makes kquants.json: a few rows of Gemma-3-270M's Q5_0, Q4_K and Q6_K
tensors as stored, with the weights gguf-py (llama.cpp's Python package,
`pip install gguf`) dequantizes them to: an independent reading of the
block layouts for src/model/convert.rs's tests.

    python3 tests/data/kquants/make.py gemma-3-270m-q4_k_m.gguf > tests/data/kquants/kquants.json
"""
import json
import sys

from gguf import GGUFReader
from gguf.quants import dequantize

CASES = [
    ("blk.0.attn_q.weight", 2),       # Q5_0, 640 columns
    ("blk.0.attn_output.weight", 2),  # Q4_K, 1024 columns
    ("blk.0.ffn_down.weight", 1),     # Q6_K, 2048 columns
]

r = GGUFReader(sys.argv[1])
out = []
for name, rows in CASES:
    t = next(t for t in r.tensors if t.name == name)
    cols = int(t.shape[0])
    raw = t.data[:rows]  # one row of blocks per tensor row
    vals = dequantize(raw, t.tensor_type).reshape(-1)[: rows * cols]
    out.append({
        "name": name,
        "type": t.tensor_type.name,
        "rows": rows,
        "cols": cols,
        "raw": bytes(raw.tobytes()).hex(),
        "values": [float(v) for v in vals],
    })
json.dump(out, sys.stdout)
