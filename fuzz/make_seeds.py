#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (see fuzz/README.md).

seeds/gguf: a tiny llama model in GGUF v3 (F32 weights, one layer, a
byte-level vocabulary of 258 tokens) that llmc loads, and variants of it.
The .llmc seeds are made with the llmc binary (see README).
Standard library only.
"""
import os
import random
import struct
import sys

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))

def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b

def kv(key, ty, payload):
    return s(key) + struct.pack("<I", ty) + payload

def u32(key, v):
    return kv(key, 4, struct.pack("<I", v))

def f32(key, v):
    return kv(key, 6, struct.pack("<f", v))

def string(key, v):
    return kv(key, 8, s(v))

def str_array(key, items):
    return kv(key, 9, struct.pack("<IQ", 8, len(items)) + b"".join(s(i) for i in items))

def gguf(e=32, f=32, heads=2, kv_heads=1, ctx=8192, layers=1, extra=()):
    m = bytes_to_unicode()
    tokens = [m[b] for b in range(256)] + ["\u0120t", "he"]
    merges = ["\u0120 t", "h e"]
    vocab = len(tokens)
    kvd = e // heads * kv_heads
    meta = [
        string("general.architecture", "llama"),
        string("general.name", "fuzz-tiny"),
        u32("llama.block_count", layers),
        u32("llama.embedding_length", e),
        u32("llama.feed_forward_length", f),
        u32("llama.attention.head_count", heads),
        u32("llama.attention.head_count_kv", kv_heads),
        u32("llama.context_length", ctx),
        f32("llama.rope.freq_base", 10000.0),
        f32("llama.attention.layer_norm_rms_epsilon", 1e-5),
        string("tokenizer.ggml.model", "gpt2"),
        string("tokenizer.ggml.pre", "smollm"),
        str_array("tokenizer.ggml.tokens", tokens),
        str_array("tokenizer.ggml.merges", merges),
    ] + list(extra)
    tensors = [("token_embd.weight", [e, vocab]), ("output_norm.weight", [e])]
    for l in range(layers):
        p = f"blk.{l}."
        tensors += [
            (p + "attn_norm.weight", [e]), (p + "attn_q.weight", [e, e]),
            (p + "attn_k.weight", [e, kvd]), (p + "attn_v.weight", [e, kvd]),
            (p + "attn_output.weight", [e, e]), (p + "ffn_norm.weight", [e]),
            (p + "ffn_gate.weight", [e, f]), (p + "ffn_up.weight", [e, f]),
            (p + "ffn_down.weight", [f, e]),
        ]
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta)) + b"".join(meta)
    data = b""
    infos = b""
    for i, (name, dims) in enumerate(tensors):
        n = 1
        for d in dims:
            n *= d
        while len(data) % 32:
            data += b"\0"
        infos += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", 0, len(data))
        # Deterministic weights: norms 1; token embeddings of +-1 (each
        # token's own logit stands out, so the model predicts "the same
        # token again" and beats zstd on runs: the seeds get model blocks);
        # small sawtooth matrices.
        if name == "output_norm.weight":
            vals = [16.0] * n
        elif len(dims) == 1:
            vals = [1.0] * n
        elif name == "token_embd.weight":
            rng = random.Random(7)
            vals = [rng.choice((1.0, -1.0)) for _ in range(n)]
        else:
            vals = [((j * 7 + i * 13) % 17 - 8) / 512.0 for j in range(n)]
        data += struct.pack(f"<{n}f", *vals)
    out += infos
    while len(out) % 32:
        out += b"\0"
    return out + data

def main():
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "gguf")
    os.makedirs(d, exist_ok=True)
    seeds = {
        "tiny.gguf": gguf(),
        "tiny-2layers.gguf": gguf(layers=2, heads=4, kv_heads=2),
        "tiny-headcount0.gguf": gguf(extra=()) .replace(b"llama.attention.head_count\x04\x00\x00\x00\x02", b"llama.attention.head_count\x04\x00\x00\x00\x00"),
    }
    for name, b in seeds.items():
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(b)
        print(name, len(b), file=sys.stderr)

if __name__ == "__main__":
    main()
