"""Benchmark: tokens/s of the plain forward pass vs extraction (hooks + pooling), same run.

Usage::

    python benchmarks/extraction.py --model all-MiniLM-L6-v2 --n-words 1000
    python benchmarks/extraction.py --model SmolLM2-135M --n-words 1000 --units hidden
    python benchmarks/extraction.py --random-config llama3-8b --n-words 5300 --device cuda --dtype bf16

Both passes read the same windows in the same batches (the project's own story, repeated to
``--n-words``); the plain pass runs the base model without hooks, the extraction pass is
:func:`llmbrain_utils.extract.extract_word_activations` end to end (tokenising, planning,
hooks, pooling to words, writing the W x N array). ``--random-config llama3-8b`` builds an
untrained model with Llama-3-8B's shapes (32 layers, d_model 4096, FFN 14336, vocabulary
128256; ``--n-layers`` fewer) and reads with ``--model``'s tokenizer. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RANDOM_CONFIGS = {
    # name: LlamaConfig fields
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                      max_position_embeddings=8192, rope_theta=500000.0, rms_norm_eps=1e-5),
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=4096, rms_norm_eps=1e-5),
    "llama1-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                      max_position_embeddings=2048, rms_norm_eps=1e-6),
    # BERT-base (12 x 768, FFN 3072, 512 positions; a BertModel, read with a BERT tokenizer)
    "bert-base": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                      num_attention_heads=12, vocab_size=30522, max_position_embeddings=512),
    # a toy Llama (2 layers, d_model 64, FFN 256) for CPU smoke runs (vocabulary: the tokenizer's)
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=0, max_position_embeddings=4096, rms_norm_eps=1e-5),
}


def story_words(n: int) -> list[str]:
    from llmbrain_utils import stimuli

    text = stimuli.STORY_FILE.read_text()
    body = text.split("\n", 3)[-1] if text.count("\n") > 3 else text
    words = body.split()
    return [words[i % len(words)] for i in range(n)]


BERT_CONFIGS = {"bert-base"}


def random_model(kind: str, n_layers: int | None, tokenizer_from: str, device: str, dtype, seed: int,
                 layerwise: bool = False):
    """An untrained model with ``RANDOM_CONFIGS[kind]``'s shapes, read with ``tokenizer_from``'s
    tokenizer. ``layerwise``: a decoder whose layers hold float32 weights only while they run
    (:func:`llmbrain_utils.layerwise.layerwise_model`; CPU), for models larger than the RAM."""
    import torch
    import transformers

    from llmbrain_utils import models as M

    tok = M.load_model(tokenizer_from).tokenizer
    cfg_kw = dict(RANDOM_CONFIGS[kind])
    if n_layers:
        cfg_kw["num_hidden_layers"] = n_layers
    cfg_kw["vocab_size"] = max(cfg_kw["vocab_size"], len(tok))
    bert = kind in BERT_CONFIGS
    cfg = (transformers.BertConfig if bert else transformers.LlamaConfig)(**cfg_kw)
    dev = M.resolve_device(device)
    dt = M.resolve_dtype(dtype, dev)
    torch.manual_seed(seed)
    if layerwise:
        from llmbrain_utils import layerwise as LW

        if bert or not dev.startswith("cpu"):
            raise SystemExit("--layerwise builds a Llama-shaped decoder on the CPU")
        model, clock = LW.layerwise_model(cfg, dtype=dt, seed=seed)
    else:
        clock = None
        with torch.device(dev):
            model = (transformers.BertModel(cfg, add_pooling_layer=False) if bert
                     else transformers.LlamaModel(cfg)).to(dt).eval()
    info = {"name": f"random-{kind}", "family": "bert" if bert else "llama", "causal": not bert,
            "max_tokens": cfg.max_position_embeddings, "n_layers": cfg.num_hidden_layers,
            "d_model": cfg.hidden_size, "d_ffn": cfg.intermediate_size, "dtype": str(dt),
            "layerwise": bool(layerwise)}
    loaded = M.LoadedModel(model=model, tokenizer=tok, info=info, ffn=M.find_ffn(model))
    loaded.clock = clock
    return loaded


def plain_forward(loaded, words, *, context, context_tokens, window_tokens, batch_size):
    """Time the base model's forward over the extraction's own windows and batches, no hooks."""
    import torch

    from llmbrain_utils import extract as E

    stream = E.tokenize_words(loaded.tokenizer, words)
    max_word = int((stream.last - stream.first).max())
    ctx, encoder, C, L = E._resolve_context(loaded, context, context_tokens, window_tokens,
                                            len(stream.prefix) + len(stream.suffix), max_word)
    wins = E.plan_windows(stream, context=ctx, encoder=encoder, context_tokens=C, window_tokens=L)
    pad = E.pad_token_id(loaded.tokenizer)
    dev = loaded.device
    fkw = E._forward_kwargs(loaded.model)
    batches = [E.batch_arrays(stream, wins[i:i + batch_size], pad) for i in range(0, len(wins), batch_size)]
    n_tok, t = 0, 0.0
    for ids, mask in batches:
        ids_t, mask_t = torch.as_tensor(ids, device=dev), torch.as_tensor(mask, device=dev)
        t0 = time.perf_counter()
        with torch.inference_mode():
            loaded.model(input_ids=ids_t, attention_mask=mask_t, **fkw)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t += time.perf_counter() - t0
        n_tok += int(mask.sum())
    return {"tokens": n_tok, "seconds": t, "tokens_per_s": n_tok / t, "windows": len(wins),
            "context_tokens": C, "window_tokens": L}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="registry name, hub id or path "
                    "(with --random-config: the tokenizer's model)")
    ap.add_argument("--n-words", type=int, default=1000)
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, help="bf16 | fp16 | float32 (half types on GPU only)")
    ap.add_argument("--random-config", choices=sorted(RANDOM_CONFIGS), default=None)
    ap.add_argument("--n-layers", type=int, default=None, help="with --random-config: fewer layers")
    ap.add_argument("--units", choices=["output", "hidden"], default="output")
    ap.add_argument("--context", choices=["bidirectional", "causal"], default=None)
    ap.add_argument("--context-tokens", type=int, default=128)
    ap.add_argument("--window-tokens", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default=None, help="memory-map the word activations to this .npy")
    ap.add_argument("--repeat", type=int, default=1, help="repeat both passes, keep the fastest")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from llmbrain_utils import extract as E
    from llmbrain_utils import models as M

    t0 = time.perf_counter()
    if args.random_config:
        loaded = random_model(args.random_config, args.n_layers, args.model, args.device, args.dtype, 0)
    else:
        loaded = M.load_model(args.model, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    words = story_words(args.n_words)
    kw = dict(context=args.context, context_tokens=args.context_tokens, window_tokens=args.window_tokens,
              batch_size=args.batch_size)
    # warm-up (kernels, allocator), not timed
    E.extract_word_activations(loaded, words[: min(len(words), 64)], progress=False, **kw)
    best_plain, best_ext = None, None
    for _ in range(args.repeat):
        plain = plain_forward(loaded, words, **kw)
        if best_plain is None or plain["seconds"] < best_plain["seconds"]:
            best_plain = plain
        if loaded.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t1 = time.perf_counter()
        acts, table, st = E.extract_word_activations(loaded, words, units=args.units, out=args.out,
                                                     progress=False, return_stats=True, **kw)
        wall = time.perf_counter() - t1
        if best_ext is None or wall < best_ext["seconds"]:
            best_ext = {"seconds": wall, "forward_with_hooks_s": st["forward_s"],
                        "tokens": st["n_tokens_processed"], "tokens_per_s": st["n_tokens_processed"] / wall,
                        "shape": list(acts.shape)}
            if loaded.device.type == "cuda":
                best_ext["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    res = {
        "model": loaded.info.get("name"), "device": str(loaded.device),
        "gpu": torch.cuda.get_device_name() if loaded.device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "dtype": str(next(loaded.model.parameters()).dtype), "units": args.units,
        "n_words": len(words), "n_layers": len(loaded.ffn), "load_s": round(load_s, 2),
        "context": st["context"], "context_tokens": st["context_tokens"], "window_tokens": st["window_tokens"],
        "batch_size": args.batch_size, "windows": st["n_windows"],
        "plain_forward": best_plain, "extraction": best_ext,
        "overhead_ratio": best_ext["seconds"] / best_plain["seconds"],
    }
    print(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    main()
