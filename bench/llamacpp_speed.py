#!/usr/bin/env python3
"""llama.cpp on the same model, text and threads as `llmc bench --speed`.

Prints prefill (batched, like llmc compression) and one-token-at-a-time
decoding (like a single decompression stream) speeds, in tokens/s, so both
figures come from one run on one machine.

    pip install llama-cpp-python       # builds llama.cpp from source (~10 min on 2 cores)
    python3 bench/llamacpp_speed.py --model PATH.gguf --threads 2 FILE [--tokens 2048]

Decoding here feeds the text's own tokens one by one (teacher forcing), which
is what a decompressor does: the cost per token is one forward pass with a KV
cache, plus reading the logits.
"""
import argparse
import resource
import time

import llama_cpp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=2048, help="tokens of FILE to run (one chunk)")
    ap.add_argument("--batch", type=int, default=512, help="prefill batch size")
    ap.add_argument("file")
    a = ap.parse_args()

    llm = llama_cpp.Llama(
        model_path=a.model,
        n_ctx=a.tokens + 8,
        n_batch=a.batch,
        n_ubatch=a.batch,
        n_threads=a.threads,
        n_threads_batch=a.threads,
        logits_all=True,
        verbose=False,
    )
    data = open(a.file, "rb").read()
    toks = llm.tokenize(data, add_bos=False, special=False)[: a.tokens]
    n = len(toks)
    nbytes = len(llm.detokenize(toks))

    llm.reset()
    t0 = time.perf_counter()
    llm.eval(toks)
    t_prefill = time.perf_counter() - t0

    llm.reset()
    t0 = time.perf_counter()
    for t in toks:
        llm.eval([t])
    t_decode = time.perf_counter() - t0

    print(f"llama.cpp {llama_cpp.__version__}, threads {a.threads}, {n} tokens ({nbytes} bytes) of {a.file}")
    print(f"prefill (all logits): {n / t_prefill:8.1f} tokens/s  {nbytes / t_prefill:8.1f} bytes/s")
    print(f"decode  (1 token/step): {n / t_decode:8.1f} tokens/s  {nbytes / t_decode:8.1f} bytes/s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
