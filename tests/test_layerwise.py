"""A decoder whose layers hold weights only while they run (llmbrain_utils.layerwise): the same
numbers as the ordinary model with the same weights, only one layer resident at a time, and the
project's extraction reads it unchanged. The paper-scale script's layerwise runs and its
summary report."""

import json

import numpy as np
import pytest
import torch
import transformers

from llmbrain_utils import layerwise
from llmbrain_utils.errors import ParameterError

CFG = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=1000, max_position_embeddings=512)


def _reference(cfg, seed):
    """An ordinary LlamaModel filled by the same builder."""
    ref = transformers.LlamaModel(cfg).eval()
    mat = layerwise.random_init(seed, cfg.initializer_range)
    mat(-1, ref.embed_tokens)
    for i, layer in enumerate(ref.layers):
        mat(i, layer)
    with torch.no_grad():
        ref.norm.weight.fill_(1.0)
    return ref


def test_same_numbers_as_the_ordinary_model_with_one_layer_resident():
    cfg = transformers.LlamaConfig(**CFG)
    model, clock = layerwise.layerwise_model(cfg, seed=3)
    ids = torch.randint(0, 1000, (2, 20), generator=torch.Generator().manual_seed(0))
    embed_and_norm = (1000 * 64 + 64) * 4
    assert layerwise.resident_bytes(model) == embed_and_norm  # no layer has weights yet
    seen = []
    for layer in model.layers:  # while a layer runs, it alone has weights
        layer.mlp.register_forward_hook(
            lambda m, a, o: seen.append(layerwise.resident_bytes(model) - embed_and_norm))
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=False).last_hidden_state
        again = model(input_ids=ids, use_cache=False).last_hidden_state
    per_layer = sum(p.numel() for p in transformers.LlamaModel(cfg).layers[0].parameters()) * 4
    assert seen == [per_layer] * 6
    assert layerwise.resident_bytes(model) == embed_and_norm  # freed after the pass
    assert clock.n_built == 6 and clock.build_s > 0
    with torch.inference_mode():
        ref = _reference(cfg, 3)(input_ids=ids, use_cache=False).last_hidden_state
    assert torch.equal(out, ref) and torch.equal(out, again)  # rebuilt identically each call
    other, _ = layerwise.layerwise_model(cfg, seed=4)
    with torch.inference_mode():
        assert not torch.equal(other(input_ids=ids, use_cache=False).last_hidden_state, out)


def test_a_model_without_decoder_layers_is_refused():
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, vocab_size=100)
    with pytest.raises(ParameterError, match="no .layers list"):
        layerwise.layerwise_model(cfg)


def test_the_extraction_reads_it_unchanged(benchmark_script):
    ex = benchmark_script("extraction")
    from llmbrain_utils import extract as E
    from llmbrain_utils.models import find_ffn

    loaded = ex.random_model("tiny", None, "SmolLM2-135M", "cpu", None, 0, layerwise=True)
    assert loaded.info["layerwise"] and len(loaded.ffn) == 2
    ref = ex.random_model("tiny", None, "SmolLM2-135M", "cpu", None, 0)
    ref.model = _reference(loaded.model.config, 0)
    ref.ffn = find_ffn(ref.model)
    words = ex.story_words(300)
    kw = dict(context_tokens=16, batch_size=64, progress=False)
    a, table_a = E.extract_word_activations(loaded, words, **kw)
    b, table_b = E.extract_word_activations(ref, words, **kw)
    assert table_a.equals(table_b) and a.shape == (300, 2 * 64)
    np.testing.assert_array_equal(a, b)


def test_paper_scale_layerwise_run_and_its_report(benchmark_script, narratives, tmp_path):
    ps = benchmark_script("paper_scale")
    report = tmp_path / "cpu.json"
    args = ["--config", "tiny", "--story", "pieman", "--narratives-dir", str(narratives),
            "--device", "cpu", "--k", "4", "--dict-iter", "5", "--layerwise", "on",
            "--until", "dictionary", "--work", str(tmp_path / "w"), "--report", str(report)]
    res = ps.main(args)
    assert res["layerwise"] and list(res["stages"]) == ["stimulus", "model", "forward", "extraction",
                                                        "dictionary"]
    ext, fwd = res["stages"]["extraction"], res["stages"]["forward"]
    assert fwd["tokens"] == ext["n_tokens_processed"] > res["sizes"]["words"]  # the same windows
    assert ext["ratio_to_reference"] == pytest.approx(ext["wall_s"] / fwd["wall_s"], rel=1e-2)
    rep = json.loads(report.read_text())
    assert rep["device"] == "cpu" and [r["stage"] for r in rep["runs"]] == list(res["stages"])
    assert {"model", "stage", "wall_s", "peak_rss_gib", "ratio_to_reference"} <= set(rep["runs"][0])
    ps.main(args + ["--until", "extraction"])  # a rerun replaces the model's rows
    rep = json.loads(report.read_text())
    assert [r["stage"] for r in rep["runs"]] == ["stimulus", "model", "forward", "extraction"]
    # the summary can be rebuilt from the full reports (--out) of earlier runs
    out = tmp_path / "run.json"
    out.write_text(json.dumps(res, default=str))
    rebuilt = ps.main(["--collect", str(out), "--report", str(tmp_path / "rebuilt.json")])
    assert [r["stage"] for r in rebuilt["runs"]] == list(res["stages"])
    assert rebuilt["models"]["tiny"]["sizes"] == res["sizes"] and rebuilt["models"]["tiny"]["layerwise"]
    res["device"] = "cuda:0"
    with pytest.raises(SystemExit, match="a report of device 'cpu'"):
        ps.add_to_report(report, res)


def test_layerwise_is_chosen_when_the_weights_would_not_fit(benchmark_script):
    ps = benchmark_script("paper_scale")
    assert ps.want_layerwise(ps.parse(["--config", "llama3-8b"]), "cpu")  # 32 GB of float32
    assert not ps.want_layerwise(ps.parse(["--config", "tiny"]), "cpu")
    assert not ps.want_layerwise(ps.parse(["--config", "llama3-8b"]), "cuda:0")
    assert not ps.want_layerwise(ps.parse(["--config", "bert-base"]), "cpu")
    assert ps.want_layerwise(ps.parse(["--config", "tiny", "--layerwise", "on"]), "cuda:0")
