#!/usr/bin/env python3
"""What llama.cpp computes for Gemma-3-270M on llmc's own prompts and
tricky strings: gemma3-llamacpp.json, the fixture tests/gemma.rs holds llmc
to (token ids equal; argmax of the logits at every position).

    pip install llama-cpp-python==0.3.36      # builds llama.cpp (~15 min on 2 cores)
    python3 tests/data/reference/make_gemma_llamacpp.py \
        ~/.cache/llmc/gemma-3-270m-q4_k_m.gguf > tests/data/reference/gemma3-llamacpp.json

Token ids: Llama.tokenize(text, add_bos=False, special=False). Logits: one
forward pass over [BOS] + ids with logits for every position (2 threads);
per position the argmax and the margin of the top logit over the second
(a near tie may flip with llmc's int8 arithmetic, a clear winner may not).
"""
import json
import sys

import llama_cpp
import numpy as np

PROMPTS = [
    "The capital of France is Paris, and the capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) +",
    "Alice was beginning to get very tired of sitting by her sister on the bank,"
    " and of having nothing to do: once or twice she had peeped into the book",
]

TRICKY = [
    "  two leading spaces, then\ttab\t\tand  three   spaces",
    "line one\nline two\n\n\nthree newlines\r\nCRLF\r\n",
    "<html><body><p>Some <b>bold</b> text &amp; an entity</p></body></html>",
    "int main(void) {\n\treturn 0;\n}\n",
    "Ünïcödé, 日本語のテキスト, emoji 🎉👍🏽, Ελληνικά, русский",
    "numbers 1234567890 3.14159 -42 1e-9 0x1F",
    "<start_of_turn>user\nnot a special token<end_of_turn>",
    "URLs: https://example.com/path?q=1&r=2#frag and user@example.org",
    "    indented by four\n        by eight\n",
    "MiXeD CaSe and ALLCAPS and lowercase",
    "{\"json\": [1, 2, {\"nested\": null}], \"ok\": true}",
    "2026-12-03 21:30:00 INFO dpkg: status installed libc6:amd64 2.36-9",
]


def main():
    llm = llama_cpp.Llama(
        model_path=sys.argv[1],
        n_ctx=512,
        n_batch=512,
        n_threads=2,
        logits_all=True,
        verbose=False,
    )
    out = {
        "how": f"llama-cpp-python {llama_cpp.__version__}, 2 threads, tests/data/reference/make_gemma_llamacpp.py",
        "tokenizer_cases": [],
        "prompts": [],
    }
    for t in TRICKY + PROMPTS:
        ids = llm.tokenize(t.encode(), add_bos=False, special=False)
        out["tokenizer_cases"].append({"text": t, "ids": ids})
    bos = llm.token_bos()
    for p in PROMPTS:
        ids = llm.tokenize(p.encode(), add_bos=False, special=False)
        llm.reset()
        llm.eval([bos] + ids)
        logits = np.array(llm.scores[: len(ids) + 1], dtype=np.float64)
        top = np.argsort(-logits, axis=1)[:, :2]
        rows = []
        for i in range(len(ids) + 1):
            a, b = top[i]
            rows.append({"argmax": int(a), "margin": float(logits[i, a] - logits[i, b])})
        out["prompts"].append({"text": p, "ids": ids, "positions": rows})
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)


main()
