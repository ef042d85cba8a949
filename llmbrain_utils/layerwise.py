"""A decoder whose layers exist only while they run: 7-8B models on a machine with less RAM
than their float32 weights.

A Llama-3-8B-shaped model is 32 GB of float32 weights (8 GB of them per 8 layers), more than
a 24 GiB machine holds. bf16 would fit, but a CPU without AVX-512 bf16 multiplies bf16
matrices about 150x slower than float32 (measured: 0.96 against 143 GFLOP/s on 2 threads of
an AVX2 EPYC), so an 8B forward pass would take a day. :func:`layerwise_model` keeps every
decoder layer on PyTorch's ``meta`` device (shapes, no storage) and gives it storage only for
its own forward call: a forward pre-hook materialises the layer's weights, a forward hook
frees them. At most one layer's weights (0.9 GB for Llama-3-8B in float32) are resident beside
the embedding, the final norm and the activations.

The model is an ordinary ``transformers`` module, so :func:`llmbrain_utils.extract.
extract_responses` reads it unchanged (its hooks sit on the FFN modules, which keep their
identity while their weights come and go). A layer's weights are rebuilt once per forward
call, so the extraction should run all its windows in one batch (the longest story is 15
windows of 512 tokens).

Weights come from ``materialise(index, layer)``; the default, :func:`random_init`, draws them
as ``transformers`` initialises a Llama (normal(0, ``initializer_range``) for linear maps,
ones for norms) from a generator seeded per layer, so every call rebuilds the same layer.
Real weights would be read here from a memory-mapped checkpoint, one layer at a time; this
module has only the random builder, which is what the paper-scale benchmark needs.
"""

from __future__ import annotations

import time
from typing import Callable

from .errors import ParameterError


def random_init(seed: int = 0, std: float = 0.02) -> Callable:
    """A ``materialise(index, module)`` that draws a layer's (or the embedding's) weights:
    normal(0, ``std``) for linear and embedding weights, zeros for biases, ones for norm
    weights, from a generator seeded with ``(seed, index)``. The same call gives the same
    weights."""
    import torch

    def materialise(index: int, module) -> None:
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(index) + 1)
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.dim() == 1:  # RMSNorm / LayerNorm weights
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, std, generator=g)

    return materialise


class LayerClock:
    """Seconds spent building layers' weights (the stand-in for reading them), and how many
    layers were built."""

    def __init__(self):
        self.build_s = 0.0
        self.n_built = 0


def layerwise_model(config, *, materialise: Callable | None = None, dtype=None, seed: int = 0):
    """A ``transformers`` decoder (``AutoModel.from_config(config)``, e.g. a ``LlamaModel``)
    whose decoder layers hold weights only during their own forward call.

    ``materialise(index, module)`` fills a module's freshly allocated parameters in place:
    index -1 is the embedding, -2 the final norm, 0..n-1 the decoder layers (default
    :func:`random_init` with ``seed`` and the config's ``initializer_range``). ``dtype``
    defaults to float32. Returns ``(model, clock)``; ``clock`` counts the time spent building
    the decoder layers."""
    import torch
    import transformers

    dt = torch.float32 if dtype is None else dtype
    if materialise is None:
        materialise = random_init(seed, float(getattr(config, "initializer_range", 0.02)))
    with torch.device("meta"):
        model = transformers.AutoModel.from_config(config)
    layers = getattr(model, "layers", None)
    if layers is None or not len(layers):
        raise ParameterError("config", f"{type(model).__name__} has no .layers list of decoder layers",
                             expected="a decoder such as LlamaModel (model.layers)")
    clock = LayerClock()
    # the parts outside the layers are built once and kept
    model.embed_tokens.to_empty(device="cpu")
    materialise(-1, model.embed_tokens)
    model.norm.to_empty(device="cpu")
    materialise(-2, model.norm)  # a norm: ones
    if hasattr(model, "rotary_emb"):  # its inv_freq buffer was computed on meta: recompute it
        with torch.device("cpu"):
            model.rotary_emb = type(model.rotary_emb)(config=config)
    if dt != torch.float32:
        model.embed_tokens.to(dt)
        model.norm.to(dt)

    def build(module, args, index=None):
        t0 = time.perf_counter()
        module.to_empty(device="cpu")
        materialise(index, module)
        if dt != torch.float32:
            module.to(dt)
        clock.build_s += time.perf_counter() - t0
        clock.n_built += 1

    def free(module, args, output):
        module.to("meta")

    for i, layer in enumerate(layers):
        layer.register_forward_pre_hook(lambda m, a, i=i: build(m, a, i))
        layer.register_forward_hook(free)
    return model.eval(), clock


def resident_bytes(model) -> int:
    """Bytes of the model's parameters that have storage (meta parameters count 0)."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if not p.is_meta)
