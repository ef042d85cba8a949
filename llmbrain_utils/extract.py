"""Stage 2b, extraction: a model reads the story; every artificial neuron (AN) gets a response.

Pipeline of :func:`extract_responses`::

    words --tokenise (offsets)--> tokens --sliding windows, forward hooks on every layer's FFN
    second linear layer--> word activations (W x N) --pool_to_trs--> (T x N)
    --hrf_convolve--> --zscore_columns--> responses (T x N float32), an_table (layer, unit)

**Units.** ``units="output"``: the FFN second linear layer's output units (the method's ANs:
BERT ``output.dense`` before dropout, residual and LayerNorm; Llama ``mlp.down_proj``).
``units="hidden"``: that layer's input, the FFN's hidden units (BERT ``act(W1 x + b1)``;
Llama ``act(gate(x)) * up(x)``), 4x (BERT) to 3.5x (Llama 3) wider.

**Context.** The story is one token stream (words joined by single spaces; sub-tokens are
mapped to words by character offsets). ``context_tokens`` C: every word is read with at least
C tokens of preceding context (fewer only at the story's start).

* ``"causal"`` on a decoder (its natural mode): windows of ``window_tokens`` L tokens; each
  scores the words that have >= C tokens before them inside it, the next window starts C tokens
  before the first word not yet scored. A word's activations depend on nothing after it.
* ``"causal"`` on an encoder: one window per word that *stops at the word*
  (``[first token - C, last token]``), so a bidirectional model still reads only the past.
* ``"bidirectional"`` (encoders only): windows around the words: each word has >= C tokens
  before and >= C tokens after it (fewer only at the story's ends).

C and L are clipped to the model's maximum length (logged; the values used are in the stats).

**Memory.** Activations are pooled to words inside the forward hooks, layer by layer, and
written into the output (an array or a memory-mapped ``.npy``): the tokens x ANs x layers
tensor never exists. Peak host memory, bytes, with W words, N = layers x n ANs, B windows of
L tokens per batch, n units per layer, s bytes per model element::

    weights + W*N*4 (word activations; ~0 resident when ``out`` is a path: a memmap)
            + B*L*n*s (one layer's hooked tensor, which the model makes anyway)
            + B*L*n*4 (its scored tokens gathered in float32) + W_b*n*4 (pooled words of the batch)
    extract_responses adds T*N*4 (responses; ``responses_out`` memory-maps them too) and a
    column chunk of working copies (``chunk_mb``, default 256 MB).

For Llama-3-8B (32 layers x 4096 output units = 131,072 ANs; 32 x 14336 hidden = 458,752)
over ~5,300 words, bf16 on a GPU, B = 8, L = 512: word activations 5,300 x 131,072 x 4 B =
2.8 GB (output units) or 9.7 GB (hidden units: pass ``out=`` a path); per batch and layer
8 x 512 x 14336 x 2 B = 117 MB hooked plus <= 235 MB gathered, on the GPU; responses for
T = 1,000 TRs 0.5 GB (output) or 1.8 GB (hidden). The avoided all-token tensor would be
~7,000 tokens x 131,072 x 4 B = 3.7 GB per read (output) and 12.8 GB (hidden).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ._validation import check_choice, check_int
from .errors import InputError, ParameterError

log = logging.getLogger(__name__)

UNITS = ("output", "hidden")
CONTEXTS = ("bidirectional", "causal")
WORD_POOLS = ("mean", "last")
TR_POOLS = ("mean", "sum", "last")
HRFS = ("spm", "glover", "fir")
OUTPUT_SILENT_ABS = 1e-6


# --------------------------------------------------------------------------- tokenisation
@dataclass
class TokenStream:
    """The story as one token stream.

    Attributes
    ----------
    ids : ndarray of int64 (n_tokens,)
    word : ndarray of int64 (n_tokens,)
        Word index of every token (-1: a token between words, read as context only).
    first, last : ndarray of int64 (n_words,)
        Each word's tokens lie in ``[first, last)``.
    prefix, suffix : list of int
        Special tokens the tokenizer puts around a sequence (``[CLS]``/``[SEP]``, BOS).
    offsets_used : bool
        False when the tokenizer gave no offsets and words were tokenised one by one.
    """

    ids: np.ndarray
    word: np.ndarray
    first: np.ndarray
    last: np.ndarray
    prefix: list
    suffix: list
    offsets_used: bool = True


def _word_list(words, source="words") -> list[str]:
    if isinstance(words, pd.DataFrame):
        if "word" not in words.columns:
            raise InputError(source, "no 'word' column", field="word", expected="a word table")
        seq = words["word"].tolist()
    elif isinstance(words, (list, tuple, np.ndarray, pd.Series)):
        seq = list(words)
    else:
        raise InputError(source, f"type {type(words).__name__}", expected="a DataFrame with 'word' or a list of str")
    if not seq:
        raise InputError(source, "no words", expected="at least one word")
    out = []
    for i, w in enumerate(seq):
        if not isinstance(w, str) or not w.strip():
            raise InputError(source, f"word {w!r} at position {i} is empty or not a string",
                             field="word", expected="a non-empty string")
        out.append(" ".join(w.split()))
    return out


def _special_tokens(tokenizer) -> tuple[list, list]:
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    return [], []


def tokenize_words(tokenizer, words: Sequence[str] | pd.DataFrame) -> TokenStream:
    """Tokenise the words as one text and map every sub-token to its word.

    The words are joined with single spaces; with a fast tokenizer, a token belongs to the
    word that holds its first non-space character (character offsets). A tokenizer without
    offsets falls back to tokenising word by word (each but the first with a leading space;
    logged), which can differ from reading the text at once for some BPE tokenizers.

    Raises
    ------
    InputError
        An empty word, or a word that yields no token (named, with its position).
    """
    ws = _word_list(words)
    prefix, suffix = _special_tokens(tokenizer)
    enc = None
    if getattr(tokenizer, "is_fast", False):
        text = " ".join(ws)
        lens = np.fromiter((len(w) for w in ws), dtype=np.int64, count=len(ws))
        starts = np.concatenate([[0], np.cumsum(lens + 1)[:-1]])
        ends = starts + lens
        try:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            return_attention_mask=False, verbose=False)
        except (NotImplementedError, TypeError, ValueError) as e:
            log.warning("tokenizer gave no offsets (%s): tokenising word by word", e)
            enc = None
    if enc is not None:
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        word = np.full(len(ids), -1, dtype=np.int64)
        for j, (s, e) in enumerate(enc["offset_mapping"]):
            if e <= s:
                continue
            piece = text[s:e]
            p = s + (len(piece) - len(piece.lstrip()))
            if p >= e:
                continue
            i = int(np.searchsorted(starts, p, side="right")) - 1
            if i >= 0 and p < ends[i]:
                word[j] = i
        offsets_used = True
    else:
        if not getattr(tokenizer, "is_fast", False):
            log.warning("tokenizer %s is not a fast tokenizer (no offsets): tokenising word by word",
                        type(tokenizer).__name__)
        chunks = [tokenizer.encode(w if i == 0 else " " + w, add_special_tokens=False)
                  for i, w in enumerate(ws)]
        ids = np.asarray([t for c in chunks for t in c], dtype=np.int64)
        word = np.repeat(np.arange(len(ws)), [len(c) for c in chunks]).astype(np.int64)
        offsets_used = False
    mapped = word[word >= 0]
    counts = np.bincount(mapped, minlength=len(ws))
    if (counts == 0).any():
        i = int(np.flatnonzero(counts == 0)[0])
        raise InputError("words", f"word {ws[i]!r} at position {i} not found in the token stream",
                         field="word",
                         expected="words the tokenizer keeps (it dropped every character of this one)")
    if (np.diff(mapped) < 0).any():  # pragma: no cover - offsets are monotone for text in order
        raise InputError("words", "sub-tokens out of word order", field="word")
    idx = np.arange(len(ids))
    first = np.full(len(ws), len(ids), dtype=np.int64)
    last = np.zeros(len(ws), dtype=np.int64)
    np.minimum.at(first, word[word >= 0], idx[word >= 0])
    np.maximum.at(last, word[word >= 0], idx[word >= 0] + 1)
    return TokenStream(ids, word, first, last, list(prefix), list(suffix), offsets_used)


# --------------------------------------------------------------------------- windows
@dataclass
class Window:
    """A slice ``[start, end)`` of the token stream that scores words ``[w0, w1)``."""

    start: int
    end: int
    w0: int
    w1: int


def plan_windows(stream: TokenStream, *, context: str, encoder: bool, context_tokens: int,
                 window_tokens: int) -> list[Window]:
    """Cut the token stream into windows (see the module's docstring for the three modes)."""
    first, last = stream.first, stream.last
    n_tok, n_w, C, L = len(stream.ids), len(first), context_tokens, window_tokens
    if context == "causal" and encoder:
        return [Window(int(max(0, first[w] - C)), int(last[w]), w, w + 1) for w in range(n_w)]
    after = C if context == "bidirectional" else 0
    out: list[Window] = []
    w = 0
    while w < n_w:
        s = int(max(0, first[w] - C))
        e_max = min(n_tok, s + L)
        w1 = w
        while w1 < n_w and min(n_tok, last[w1] + after) <= e_max:
            w1 += 1
        if w1 == w:  # guarded by the parameter checks
            raise ParameterError("window_tokens", f"{L} leaves no room for word {w}",
                                 expected=f">= {int(last[w] - first[w]) + C + after}")
        e = e_max if after else int(last[w1 - 1])
        out.append(Window(s, e, w, w1))
        w = w1
    return out


def pad_token_id(tokenizer) -> int:
    """The tokenizer's padding id (else its EOS id, else 0): padded positions are masked out."""
    for t in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if t is not None:
            return int(t)
    return 0


def batch_arrays(stream: TokenStream, batch: Sequence[Window], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Input ids and attention mask (B x longest window) of a batch: special tokens around
    every window, padding on the right (a causal model's real tokens never see it)."""
    rows = [np.concatenate([stream.prefix, stream.ids[w.start:w.end], stream.suffix]).astype(np.int64)
            for w in batch]
    Lb = max(len(r) for r in rows)
    ids = np.full((len(rows), Lb), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), Lb), dtype=np.int64)
    for b, r in enumerate(rows):
        ids[b, :len(r)] = r
        mask[b, :len(r)] = 1
    return ids, mask


# --------------------------------------------------------------------------- extraction
def _open_out(out, shape):
    if out is None:
        return np.zeros(shape, dtype=np.float32)
    if isinstance(out, (str, os.PathLike)):
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        return np.lib.format.open_memmap(p, mode="w+", dtype=np.float32, shape=shape)
    if isinstance(out, np.ndarray):
        if out.shape != shape or out.dtype != np.float32:
            raise ParameterError("out", f"array of shape {out.shape} and dtype {out.dtype}",
                                 expected=f"shape {shape}, float32")
        return out
    raise ParameterError("out", f"type {type(out).__name__}", expected="None, a path or a float32 array")


def _resolve_context(loaded, context, context_tokens, window_tokens, n_special, max_word):
    encoder = not loaded.info.get("causal", False)
    if context is None:
        context = "bidirectional" if encoder else "causal"
    check_choice("context", context, CONTEXTS)
    if context == "bidirectional" and not encoder:
        raise ParameterError("context", f"'bidirectional' with the decoder {loaded.info.get('name')}",
                             expected="'causal' (a decoder reads only the past)")
    check_int("context_tokens", context_tokens, minimum=0)
    check_int("window_tokens", window_tokens, minimum=2, allow_none=True)
    max_len = int(loaded.info.get("max_tokens") or 512) - n_special
    after = 1 if context == "bidirectional" else 0
    C = int(context_tokens)
    room = max_len - max_word
    c_max = room // 2 if after else room
    if c_max < 0:
        raise InputError("words", f"a word of {max_word} tokens is longer than the model's window",
                         field="word", expected=f"<= {max_len} tokens per word")
    if C > c_max:
        log.warning("context_tokens %d clipped to %d (model max %d tokens)", C, c_max, max_len)
        C = c_max
    if context == "causal" and encoder:
        return context, encoder, C, C + max_word
    need = C * (1 + after) + max_word
    if window_tokens is None:
        L = min(max_len, max(4 * C, need + 64))
    else:
        L = int(window_tokens)
        if L > max_len:
            log.warning("window_tokens %d clipped to the model's %d", L, max_len)
            L = max_len
    if L < need:
        raise ParameterError("window_tokens", f"{L} is too short for context_tokens={C}",
                             expected=f">= {need} ({'2 x ' if after else ''}context + the longest word)")
    return context, encoder, C, L


def _forward_kwargs(model) -> dict:
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return {}
    return {"use_cache": False} if "use_cache" in params else {}


def _use_csr(dev) -> bool:
    """Pool with a sparse CSR product on CPU (3-4x faster than index_add_ there); index_add_ on GPUs."""
    return dev.type == "cpu"


class _Stop(Exception):
    """Raised by the last hook to skip the layers after it."""


def extract_word_activations(loaded, words, *, units: str = "output", context: str | None = None,
                             context_tokens: int = 128, window_tokens: int | None = None,
                             word_pool: str = "mean", batch_size: int = 8, device: str | None = None,
                             layers: Sequence[int] | None = None, out=None, progress: bool = True,
                             return_stats: bool = False):
    """Activations of every AN for every word.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`llmbrain_utils.models.load_model`.
    words : DataFrame or list of str
        The word table (column ``word``) in spoken order; every word is read and returned
        (also words outside the scan, which :func:`pool_to_trs` drops).
    units : {"output", "hidden"}
        The FFN second linear layer's output units (ANs) or its input (hidden) units.
    context : {"bidirectional", "causal"}, optional
        Default: bidirectional for encoders, causal for decoders (see the module docstring).
    context_tokens : int
        C, the least number of preceding tokens every word is read with (clipped to the model).
    window_tokens : int, optional
        Window length L (without special tokens); default ``min(model max, max(4 C, 2 C + 64))``.
    word_pool : {"mean", "last"}
        Sub-tokens -> word: their mean, or the last sub-token.
    batch_size : int
        Windows per forward pass.
    device : str, optional
        Move the model there first (see :func:`llmbrain_utils.models.resolve_device`).
    layers : sequence of int, optional
        Only these layers (default all); the forward stops after the last one.
    out : None, path or float32 array
        Where to write the W x N result: a path makes a memory-mapped ``.npy``.
    progress : bool
        A tqdm bar over batches.
    return_stats : bool
        Also return the extraction statistics (see :func:`extract_responses`).

    Returns
    -------
    acts : ndarray (W, N) float32
        Columns are layer-major: layer ``l`` unit ``u`` is column ``sum(n_<l) + u``.
    an_table : DataFrame
        ``layer``, ``unit`` of every column.
    stats : dict
        Only with ``return_stats``.
    """
    import torch

    from .models import _linear_shape, resolve_device

    check_choice("units", units, UNITS)
    check_choice("word_pool", word_pool, WORD_POOLS)
    check_int("batch_size", batch_size)
    n_layers = len(loaded.ffn)
    if layers is None:
        layers = list(range(n_layers))
    else:
        layers = sorted(set(int(x) for x in layers))
        if not layers or layers[0] < 0 or layers[-1] >= n_layers:
            raise ParameterError("layers", f"{layers}", expected=f"indices in 0..{n_layers - 1}")
    stream = tokenize_words(loaded.tokenizer, words)
    n_w = len(stream.first)
    max_word = int((stream.last - stream.first).max())
    context, encoder, C, L = _resolve_context(loaded, context, context_tokens, window_tokens,
                                              len(stream.prefix) + len(stream.suffix), max_word)
    if device is not None:
        dev = resolve_device(device)
        if str(loaded.device) != dev:
            loaded.model.to(dev)
            loaded.info["device"] = dev
    dev = loaded.device
    widths = [_linear_shape(loaded.ffn[l])[0 if units == "output" else 1] for l in layers]
    col0 = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    N = int(col0[-1])
    acts = _open_out(out, (n_w, N))
    an_table = pd.DataFrame({"layer": np.repeat(layers, widths).astype(np.int64),
                             "unit": np.concatenate([np.arange(w) for w in widths]).astype(np.int64)})
    windows = plan_windows(stream, context=context, encoder=encoder, context_tokens=C, window_tokens=L)

    # which tokens of a window are pooled into which word, with which weight
    n_tok_word = np.bincount(stream.word[stream.word >= 0], minlength=n_w)
    pad_id = pad_token_id(loaded.tokenizer)
    P = len(stream.prefix)

    class State:
        flat = seg = wts = csr = None
        w_lo = w_hi = 0

    st = State()
    sum_abs = [0.0] * len(layers)
    n_seen = [0] * len(layers)
    vmax = [None] * len(layers)
    last_layer = layers[-1]

    def make_hook(k):
        def hook(mod, args, output):
            h = output if units == "output" else args[0]
            h = h.reshape(-1, h.shape[-1])
            sel = h.index_select(0, st.flat).float()
            a = sel.abs()
            sum_abs[k] += float(a.sum())
            n_seen[k] += sel.numel()
            m = sel.amax(0) if units == "hidden" else a.amax(0)
            del a
            vmax[k] = m if vmax[k] is None else torch.maximum(vmax[k], m)
            if st.csr is not None:  # CPU: a sparse (words x tokens) product beats index_add_
                pooled = st.csr @ sel
            else:
                pooled = torch.zeros(st.w_hi - st.w_lo, sel.shape[1], dtype=torch.float32, device=sel.device)
                pooled.index_add_(0, st.seg, sel * st.wts[:, None])
            acts[st.w_lo:st.w_hi, col0[k]:col0[k + 1]] = pooled.cpu().numpy()
            if layers[k] == last_layer and last_layer < n_layers - 1:
                raise _Stop
        return hook

    handles = [loaded.ffn[l].register_forward_hook(make_hook(k)) for k, l in enumerate(layers)]
    fkw = _forward_kwargs(loaded.model)
    n_tokens = 0
    t_fwd = 0.0
    t0 = time.perf_counter()
    try:
        from .progress import bar

        batches = [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
        for batch in bar(batches, f"extract {loaded.info.get('name', '')}".strip(), unit="batch",
                         show=progress):
            ids, mask = batch_arrays(stream, batch, pad_id)
            Lb = ids.shape[1]
            flat, seg, wts = [], [], []
            w_lo = batch[0].w0
            for b, w in enumerate(batch):
                toks = np.arange(stream.first[w.w0], stream.last[w.w1 - 1])
                wd = stream.word[toks]
                keep = (wd >= w.w0) & (wd < w.w1)
                toks, wd = toks[keep], wd[keep]
                if word_pool == "last":
                    lastk = np.r_[wd[1:] != wd[:-1], True]
                    toks, wd = toks[lastk], wd[lastk]
                    wt = np.ones(len(toks), dtype=np.float32)
                else:
                    wt = (1.0 / n_tok_word[wd]).astype(np.float32)
                flat.append(b * Lb + P + (toks - w.start))
                seg.append(wd - w_lo)
                wts.append(wt)
            st.flat = torch.as_tensor(np.concatenate(flat), device=dev)
            st.seg = torch.as_tensor(np.concatenate(seg), device=dev)
            st.wts = torch.as_tensor(np.concatenate(wts), device=dev)
            st.w_lo, st.w_hi = w_lo, batch[-1].w1
            st.csr = None
            if _use_csr(dev):
                seg_np = np.concatenate(seg)
                crow = np.concatenate([[0], np.cumsum(np.bincount(seg_np, minlength=st.w_hi - w_lo))])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                    st.csr = torch.sparse_csr_tensor(torch.as_tensor(crow), torch.arange(len(seg_np)),
                                                     st.wts, (st.w_hi - w_lo, len(seg_np)))
            tf = time.perf_counter()
            with torch.inference_mode():
                try:
                    loaded.model(input_ids=torch.as_tensor(ids, device=dev),
                                 attention_mask=torch.as_tensor(mask, device=dev), **fkw)
                except _Stop:
                    pass
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t_fwd += time.perf_counter() - tf
            n_tokens += int(mask.sum())
    finally:
        for h in handles:
            h.remove()
    if isinstance(acts, np.memmap):
        acts.flush()
    elapsed = time.perf_counter() - t0
    if not return_stats:
        return acts, an_table
    per_layer = []
    for k, l in enumerate(layers):
        m = vmax[k].cpu().numpy()
        silent = (m <= 0) if units == "hidden" else (m < OUTPUT_SILENT_ABS)
        per_layer.append({"layer": l, "mean_abs": sum_abs[k] / max(n_seen[k], 1),
                          "never_active_share": float(silent.mean()), "n_units": int(len(m))})
    stats = {
        "units": units, "context": context, "context_tokens": C, "window_tokens": L,
        "word_pool": word_pool, "batch_size": batch_size, "n_words": n_w,
        "n_tokens_story": int(len(stream.ids)), "n_windows": len(windows),
        "n_tokens_processed": n_tokens, "forward_s": t_fwd, "extract_s": elapsed,
        "tokens_per_s": n_tokens / t_fwd if t_fwd > 0 else math.nan,
        "offsets_used": stream.offsets_used, "device": str(dev),
        "never_active_rule": ("hidden unit <= 0 at every read token" if units == "hidden"
                              else f"|output unit| < {OUTPUT_SILENT_ABS:g} at every read token"),
        "layers": per_layer,
    }
    return acts, an_table, stats


# --------------------------------------------------------------------------- TR pooling, HRF, z-score
def _col_chunks(n_rows: int, n_cols: int, chunk_mb: float = 256.0):
    step = max(1, int(chunk_mb * 2 ** 20 // max(1, 8 * n_rows)))
    for c0 in range(0, n_cols, step):
        yield c0, min(n_cols, c0 + step)


def pool_to_trs(word_acts: np.ndarray, tr_index, n_trs: int, how: str = "mean",
                *, chunk_mb: float = 256.0) -> tuple[np.ndarray, np.ndarray]:
    """Pool word activations into TRs.

    Parameters
    ----------
    word_acts : array (W, N)
    tr_index : array-like of int (W,)
        The TR of every word; words with ``tr < 0`` or ``tr >= n_trs`` are dropped.
    n_trs : int
    how : {"mean", "sum", "last"}
        Mean or sum of the TR's words, or its last word (in the order of the rows).

    Returns
    -------
    X : ndarray (n_trs, N) float32
        Silent TRs (no word) are 0.
    silent : ndarray of bool (n_trs,)
    """
    import scipy.sparse as sp

    check_choice("how", how, TR_POOLS)
    check_int("n_trs", n_trs)
    if not hasattr(word_acts, "ndim") or word_acts.ndim != 2:
        raise ParameterError("word_acts", f"shape {getattr(word_acts, 'shape', None)}", expected="a 2-D array (W, N)")
    tr = np.asarray(tr_index)
    if tr.ndim != 1 or len(tr) != word_acts.shape[0]:
        raise ParameterError("tr_index", f"shape {tr.shape}", expected=f"({word_acts.shape[0]},), one TR per word")
    if not np.issubdtype(tr.dtype, np.integer):
        if np.issubdtype(tr.dtype, np.floating) and np.all(np.isfinite(tr)) and np.all(tr == np.round(tr)):
            tr = tr.astype(np.int64)
        else:
            raise ParameterError("tr_index", f"dtype {tr.dtype}", expected="integer TR indices")
    rows = np.flatnonzero((tr >= 0) & (tr < n_trs))
    counts = np.bincount(tr[rows], minlength=n_trs)
    silent = counts == 0
    if how == "last":
        last = np.full(n_trs, -1, dtype=np.int64)
        np.maximum.at(last, tr[rows], rows)
        keep = last >= 0
        M = sp.csr_matrix((np.ones(keep.sum()), (np.flatnonzero(keep), last[keep])),
                          shape=(n_trs, word_acts.shape[0]))
    else:
        w = np.ones(len(rows)) if how == "sum" else 1.0 / counts[tr[rows]]
        M = sp.csr_matrix((w, (tr[rows], rows)), shape=(n_trs, word_acts.shape[0]))
    X = np.empty((n_trs, word_acts.shape[1]), dtype=np.float32)
    for c0, c1 in _col_chunks(word_acts.shape[0], word_acts.shape[1], chunk_mb):
        X[:, c0:c1] = M @ np.asarray(word_acts[:, c0:c1], dtype=np.float64)
    return X, silent


def hrf_kernel(tr_s: float = 1.5, hrf: str = "spm", time_length: float = 32.0) -> np.ndarray:
    """The HRF sampled at ``0, tr_s, 2 tr_s, ... < time_length`` (nilearn's model), sum 1.

    nilearn computes the HRF on an oversampled grid (``np.linspace(0, time_length, n)``); it is
    interpolated here at exact multiples of the TR.
    """
    from nilearn.glm.first_level import hemodynamic_models as hm

    check_choice("hrf", hrf, ("spm", "glover"))
    if not isinstance(tr_s, numbers.Real) or isinstance(tr_s, bool) or not tr_s > 0:
        raise ParameterError("tr_s", f"{tr_s!r}", expected="a positive TR in seconds")
    fn = hm.spm_hrf if hrf == "spm" else hm.glover_hrf
    fine = fn(float(tr_s), oversampling=50, time_length=time_length)
    t_fine = np.linspace(0, time_length, len(fine))
    t = np.arange(0, time_length, float(tr_s))
    k = np.interp(t, t_fine, fine)
    return k / k.sum()


def hrf_convolve(X: np.ndarray, tr_s: float = 1.5, hrf: str = "spm",
                 fir_delays: Sequence[int] = (1, 2, 3, 4), *, chunk_mb: float = 256.0) -> np.ndarray:
    """Convolve every column with an HRF (causal, truncated to T rows).

    Parameters
    ----------
    X : array (T, N)
    tr_s : float
    hrf : {"spm", "glover", "fir"}
        nilearn's SPM or Glover HRF (see :func:`hrf_kernel`), or a finite impulse response:
        copies of X delayed by each of ``fir_delays`` TRs.
    fir_delays : sequence of int
        Delays (TRs, >= 0) for ``hrf="fir"``.

    Returns
    -------
    ndarray float32
        (T, N) for an HRF; (T, N * len(fir_delays)) for FIR, delay-major (columns
        ``d * N + j`` are column j delayed by ``fir_delays[d]``).
    """
    from scipy.signal import lfilter

    check_choice("hrf", hrf, HRFS)
    if not hasattr(X, "ndim") or X.ndim != 2:
        raise ParameterError("X", f"shape {getattr(X, 'shape', None)}", expected="a 2-D array (T, N)")
    T, N = X.shape
    if hrf == "fir":
        d = list(fir_delays) if fir_delays is not None else []
        if not d or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0 for x in d):
            raise ParameterError("fir_delays", f"{fir_delays!r}", expected="non-empty integers >= 0")
        Y = np.zeros((T, N * len(d)), dtype=np.float32)
        for k, delay in enumerate(d):
            if delay < T:
                Y[delay:, k * N:(k + 1) * N] = X[:T - delay]
        return Y
    kern = hrf_kernel(tr_s, hrf)
    Y = np.empty((T, N), dtype=np.float32)
    for c0, c1 in _col_chunks(T, N, chunk_mb):
        Y[:, c0:c1] = lfilter(kern, [1.0], np.asarray(X[:, c0:c1], dtype=np.float64), axis=0)
    return Y


def zscore_columns(X: np.ndarray, *, out: np.ndarray | None = None,
                   chunk_mb: float = 256.0) -> tuple[np.ndarray, np.ndarray]:
    """Z-score every column (mean 0, population SD 1).

    A column is *constant* when its SD is at most 1e-6 of its largest absolute value (exact
    constants, all-zero columns and float32 round-off); it becomes all 0, never NaN.

    Returns
    -------
    Z : ndarray float32 (same shape)
    constant : ndarray of bool (N,)
    """
    if not hasattr(X, "ndim") or X.ndim != 2:
        raise ParameterError("X", f"shape {getattr(X, 'shape', None)}", expected="a 2-D array (T, N)")
    if X.shape[0] < 2:
        raise ParameterError("X", f"{X.shape[0]} rows", expected="at least 2 time points")
    Z = out if out is not None else np.empty(X.shape, dtype=np.float32)
    constant = np.zeros(X.shape[1], dtype=bool)
    for c0, c1 in _col_chunks(X.shape[0], X.shape[1], chunk_mb):
        x = np.asarray(X[:, c0:c1], dtype=np.float64)
        if not np.all(np.isfinite(x)):
            j = c0 + int(np.flatnonzero(~np.isfinite(x).all(0))[0])
            raise InputError("X", "non-finite values", field=f"column {j}", expected="finite numbers")
        mu = x.mean(0)
        sd = x.std(0)
        const = sd <= 1e-6 * np.abs(x).max(0)
        sd[const] = 1.0
        z = (x - mu) / sd
        z[:, const] = 0.0
        Z[:, c0:c1] = z
        constant[c0:c1] = const
    return Z, constant


def extract_responses(loaded, words: pd.DataFrame, n_trs: int, *, tr_s: float = 1.5,
                      units: str = "output", context: str | None = None, context_tokens: int = 128,
                      window_tokens: int | None = None, word_pool: str = "mean", tr_pool: str = "mean",
                      hrf: str = "spm", fir_delays: Sequence[int] = (1, 2, 3, 4), batch_size: int = 8,
                      device: str | None = None, layers: Sequence[int] | None = None, out=None,
                      responses_out=None, progress: bool = True) -> dict[str, Any]:
    """The whole stage: AN responses on the TR grid, HRF-convolved and z-scored.

    Parameters
    ----------
    loaded : LoadedModel
    words : DataFrame
        The word table, with ``word`` and ``tr`` (int; words outside ``[0, n_trs)`` are context
        only).
    n_trs : int
    tr_s : float
    units, context, context_tokens, window_tokens, word_pool, batch_size, device, layers, out,
    progress
        See :func:`extract_word_activations`.
    tr_pool : {"mean", "sum", "last"}
        Words -> TR (:func:`pool_to_trs`).
    hrf : {"spm", "glover", "fir"}, fir_delays
        See :func:`hrf_convolve`.
    responses_out : None, path or float32 array
        Where to write the responses (a path makes a memory-mapped ``.npy``).

    Returns
    -------
    dict
        ``responses`` (T x N' float32, z-scored; N' = N, or N x len(fir_delays) for FIR),
        ``an_table`` (``layer``, ``unit``, [``delay``,] ``constant``), ``constant`` (bool N'),
        ``silent`` (bool T: TRs without words), ``stats`` (per layer ``mean_abs`` and
        ``never_active_share``, timing, tokens/s, context used).
    """
    # every parameter is checked before the model reads a word
    if not isinstance(words, pd.DataFrame):
        raise InputError("words", f"type {type(words).__name__}", expected="a word table (DataFrame)")
    for col in ("word", "tr"):
        if col not in words.columns:
            raise InputError("words", f"no '{col}' column", field=col, expected="the stimulus stage's word table")
    check_int("n_trs", n_trs)
    check_choice("units", units, UNITS)
    check_choice("word_pool", word_pool, WORD_POOLS)
    check_choice("tr_pool", tr_pool, TR_POOLS)
    check_choice("hrf", hrf, HRFS)
    if hrf == "fir":
        hrf_convolve(np.zeros((1, 1), np.float32), tr_s, "fir", fir_delays)
    else:
        hrf_kernel(tr_s, hrf)
    tr = words["tr"].to_numpy()
    if not np.issubdtype(tr.dtype, np.integer):
        raise InputError("words", f"'tr' has dtype {tr.dtype}", field="tr", expected="integer TR indices")
    if not ((tr >= 0) & (tr < n_trs)).any():
        raise InputError("words", f"no word falls inside the scan's {n_trs} TRs", field="tr",
                         expected=f"some tr in 0..{n_trs - 1}")
    t0 = time.perf_counter()
    acts, an_table, stats = extract_word_activations(
        loaded, words, units=units, context=context, context_tokens=context_tokens,
        window_tokens=window_tokens, word_pool=word_pool, batch_size=batch_size, device=device,
        layers=layers, out=out, progress=progress, return_stats=True)
    t1 = time.perf_counter()
    X, silent = pool_to_trs(acts, tr, n_trs, tr_pool)
    Y = hrf_convolve(X, tr_s, hrf, fir_delays)
    del X
    R = _open_out(responses_out, Y.shape)
    R, constant = zscore_columns(Y, out=R)
    del Y
    if isinstance(R, np.memmap):
        R.flush()
    if hrf == "fir":
        nd = len(list(fir_delays))
        an_table = pd.DataFrame({"layer": np.tile(an_table["layer"].to_numpy(), nd),
                                 "unit": np.tile(an_table["unit"].to_numpy(), nd),
                                 "delay": np.repeat(list(fir_delays), len(an_table))})
    an_table = an_table.assign(constant=constant)
    stats.update({"n_trs": int(n_trs), "tr_s": float(tr_s), "tr_pool": tr_pool, "hrf": hrf,
                  "n_silent_trs": int(silent.sum()), "n_constant": int(constant.sum()),
                  "n_words_in_scan": int(((tr >= 0) & (tr < n_trs)).sum()),
                  "post_s": time.perf_counter() - t1, "total_s": time.perf_counter() - t0,
                  "model": {k: loaded.info.get(k) for k in ("name", "family", "n_layers", "d_model",
                                                            "d_ffn", "causal", "weights_sha256",
                                                            "untrained", "seed", "dtype")}})
    if hrf == "fir":
        stats["fir_delays"] = list(fir_delays)
    return {"responses": R, "an_table": an_table, "constant": constant, "silent": silent, "stats": stats}
