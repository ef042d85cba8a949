"""The paper's scale end to end: a Llama-3-8B-shaped model over the longest Narratives story.

Usage::

    # on a GPU machine (random weights with Llama-3-8B's shapes, bf16): the whole chain
    python benchmarks/paper_scale.py --device cuda --dtype bf16 --out paper_scale.json
    # on this CPU: the paper's systems at their size (layerwise float32), into the summary
    python benchmarks/paper_scale.py --config llama3-8b --device cpu \
        --out benchmarks/paper_scale_cpu/llama3-8b.json --report benchmarks/paper_scale_cpu.json
    python benchmarks/paper_scale.py --config bert-base --device cpu ...
    python benchmarks/paper_scale.py --config llama1-7b --until dictionary --device cpu ...
    # the same code at toy size on a CPU (what the test runs)
    python benchmarks/paper_scale.py --config tiny --story pieman --k 8 --dict-iter 20 \\
        --subjects 2 --resolution-mm 12 --n-perm 10 --fbn-perm 100

The stages are the pipeline's own library calls, each on the chosen device where it has one:

1. stimulus: the story's word timings (Narratives ``align.csv``) on the TR grid (the scan's
   length for a Narratives story);
2. model: random weights with the shapes of ``--config`` (``benchmarks/extraction.py``'s
   ``RANDOM_CONFIGS``; real Llama weights are not at hand), read with ``--tokenizer``'s BPE;
3. extraction: :func:`llmbrain_utils.extract.extract_responses` (hooks on every layer's FFN
   output, pooled to words inside each batch; the word activations and the responses are
   memory-mapped files, so no tokens x ANs array of all layers exists, in host or GPU memory);
4. dictionary: :func:`llmbrain_utils.dictionary.learn_dictionary` with the torch solver on the
   device (the responses read from their memory map);
5. fMRI: the synthetic twin of the story (:func:`llmbrain_utils.stages.fmri_data`: 8 subjects,
   6 mm grid, the ISC null);
6. encoding: :func:`llmbrain_utils.encoding.encode_subjects` (OLS maps, ridge CV on the device);
7. mapping: :func:`llmbrain_utils.fbn.couple_atoms` (spin null, CPU).

Per stage: wall seconds, peak host memory (RSS of this process, sampled every 20 ms by a
thread) and peak GPU memory (``torch.cuda.max_memory_allocated``, reset per stage); sizes
(words, tokens read, ANs, TRs, voxels) and the bytes the avoided tokens x ANs array would take.
Prints one JSON object (and writes it to ``--out``). ``--report SUMMARY`` adds the run's stages
to a summary over models (``{"device", "runs": [{model, stage, wall_s, peak_rss_gib,
ratio_to_reference}], "models": {...}}``; the book's performance page renders
``benchmarks/paper_scale_cpu.json``); ``--collect RUN.json ... --report SUMMARY`` rebuilds it
from the full reports of earlier runs.

On a CPU whose RAM cannot hold a model's float32 weights (Llama-3-8B: 32 GB), ``--layerwise
auto`` (the default) builds each decoder layer only for its own forward call
(:mod:`llmbrain_utils.layerwise`) and sends every window through in one batch; bf16 is no way
out on a CPU without AVX-512 bf16, where torch multiplies bf16 matrices ~150x slower than
float32. The plain forward pass (``forward``, the reference of every stage's
``ratio_to_reference``) reads the same windows in the same batches, layers built the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

class Peaks:
    """Peak RSS of this process (a sampling thread) and peak GPU memory, per ``stage``."""

    def __init__(self, interval_s: float = 0.02):
        import psutil

        self.proc, self.interval = psutil.Process(), interval_s
        self.records: dict[str, dict] = {}
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    @contextmanager
    def stage(self, name: str, cuda: bool):
        import torch

        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self._peak = self.proc.memory_info().rss
        rec = {"rss_start_gib": round(self._peak / 2 ** 30, 3)}
        t0 = time.perf_counter()
        yield rec
        if cuda:
            torch.cuda.synchronize()
        rec["wall_s"] = round(time.perf_counter() - t0, 3)
        self._peak = max(self._peak, self.proc.memory_info().rss)
        rec["peak_rss_gib"] = round(self._peak / 2 ** 30, 3)
        if cuda:
            rec["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
        self.records[name] = rec

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


def run(args) -> dict:
    import numpy as np
    import torch

    from extraction import plain_forward, random_model
    from llmbrain_utils import config, dictionary, encoding, extract, fbn, models, stages

    work = Path(args.work or tempfile.mkdtemp(prefix="llmbrain-paper-scale-"))
    tokenizer = tokenizer_of(args)
    dev = models.resolve_device(args.device)
    cuda = dev.startswith("cuda")
    base = config.validate({"story": args.story, "narratives_dir": args.narratives_dir,
                            "runs_dir": str(work / "runs"), "n_subjects": args.subjects,
                            "resolution_mm": args.resolution_mm, "n_perm": args.n_perm,
                            "fbn_perm": args.fbn_perm, "k": args.k, "lam": args.lam,
                            "units": args.units, "seed": 0})
    peaks = Peaks()
    sizes: dict = {}
    try:
        with peaks.stage("stimulus", cuda):
            stim = stages.stimulus(base)
            words = stages.read_words(stim)
            n_trs = int(stim.info["n_trs"])
        sizes.update(words=len(words), trs=n_trs)

        layerwise = want_layerwise(args, dev)
        with peaks.stage("model", cuda) as rec:
            loaded = random_model(args.config, args.n_layers, tokenizer, dev, args.dtype, 0,
                                  layerwise=layerwise)
            rec["n_params"] = int(sum(p.numel() for p in loaded.model.parameters()))
            rec["dtype"] = str(next(loaded.model.parameters()).dtype)
            rec["layerwise"] = layerwise
        batch_size = args.batch_size or (1024 if layerwise else 8)  # layerwise: one batch

        if args.reference:
            # the reference: the base model's plain forward pass over the same windows and batches
            with peaks.stage("forward", cuda) as rec:
                build0 = clock_s(loaded)
                plain = plain_forward(loaded, words, context=None, context_tokens=args.context_tokens,
                                      window_tokens=None, batch_size=batch_size)
                rec.update(tokens=plain["tokens"], windows=plain["windows"],
                           layer_build_s=round(clock_s(loaded) - build0, 3))

        with peaks.stage("extraction", cuda) as rec:
            build0 = clock_s(loaded)
            res = extract.extract_responses(
                loaded, words, n_trs, tr_s=base["tr_s"], units=args.units,
                context_tokens=args.context_tokens, batch_size=batch_size,
                out=work / "word_activations.npy", responses_out=work / "responses.npy",
                progress=False)
            st = res["stats"]
            rec["layer_build_s"] = round(clock_s(loaded) - build0, 3)
            rec.update({k: st[k] for k in ("n_tokens_processed", "n_windows", "context",
                                           "context_tokens", "window_tokens") if k in st})
            n_ans = int(res["responses"].shape[1])
            an_table = res["an_table"]
            del res
        sizes.update(ans=n_ans, layers=len(loaded.ffn), tokens_read=int(st.get("n_tokens_processed", 0)))
        # what the pooling inside each batch avoided: every token read x every AN, float32
        sizes["avoided_tokens_x_ans_gib"] = round(sizes["tokens_read"] * n_ans * 4 / 2 ** 30, 3)
        sizes["responses_gib"] = round(n_trs * n_ans * 4 / 2 ** 30, 3)
        del loaded
        if cuda:
            torch.cuda.empty_cache()

        if args.until == "extraction":
            return finish(args, dev, cuda, sizes, peaks, work, layerwise)

        with peaks.stage("dictionary", cuda) as rec:
            X = np.load(work / "responses.npy", mmap_mode="r")
            dic = dictionary.learn_dictionary(X, k=args.k, lam=args.lam, solver="torch", seed=0,
                                              n_iter=args.dict_iter, device=dev, an_table=an_table)
            D = dic.D
            rec["r2_overall"] = round(float(dic.r2_overall), 4)
            del X, dic
        if args.until == "dictionary":
            return finish(args, dev, cuda, sizes, peaks, work, layerwise)

        with peaks.stage("fmri", cuda) as rec:
            data = stages.fmri_data(base)
            bold = stages.read_bold(data, mmap=False)
            if bold.shape[1] != D.shape[0]:
                raise RuntimeError(f"fMRI has {bold.shape[1]} TRs, the dictionary {D.shape[0]}")
        sizes.update(subjects=int(bold.shape[0]), voxels=int(bold.shape[2]))

        with peaks.stage("encoding", cuda) as rec:
            enc = encoding.encode_subjects(D, bold, cv_model="ridge", device=dev)
            group_t = encoding.group_maps(enc.beta).t
            rec["median_cv_r"] = round(float(np.median(enc.cv_r)), 4)
            del enc

        with peaks.stage("mapping", cuda) as rec:
            atlas = fbn.load_atlas(base["atlas"], stages.read_mask(data))
            table = fbn.couple_atoms(group_t, atlas, threshold=base["threshold"], n_perm=args.fbn_perm,
                                     alpha=base["alpha"], seed=0)
            c = table[table.coupled]
            rec.update(couplings=int(len(c)), atoms_coupled=int(c.atom.nunique()))
    finally:
        peaks.close()
    return finish(args, dev, cuda, sizes, peaks, work, layerwise)


def clock_s(loaded) -> float:
    """Seconds the layerwise model has spent building its layers' weights (0 otherwise)."""
    clock = getattr(loaded, "clock", None)
    return clock.build_s if clock is not None else 0.0


def want_layerwise(args, dev: str) -> bool:
    """``--layerwise auto``: on a CPU, when the model's float32 weights would take more than
    half of the machine's memory."""
    if args.layerwise != "auto":
        return args.layerwise == "on"
    import psutil

    from extraction import BERT_CONFIGS, RANDOM_CONFIGS

    if args.config in BERT_CONFIGS or not dev.startswith("cpu"):
        return False
    c = RANDOM_CONFIGS[args.config]
    n_layers = args.n_layers or c["num_hidden_layers"]
    kv = c["hidden_size"] // c["num_attention_heads"] * c["num_key_value_heads"]
    per_layer = 2 * c["hidden_size"] ** 2 + 2 * c["hidden_size"] * kv + 3 * c["hidden_size"] * c["intermediate_size"]
    return 4 * n_layers * per_layer > 0.5 * psutil.virtual_memory().total


def tokenizer_of(args) -> str:
    """``--tokenizer``, else a BERT WordPiece for a BERT config and a BPE for a decoder."""
    from extraction import BERT_CONFIGS

    if args.tokenizer:
        return args.tokenizer
    return "all-MiniLM-L6-v2" if args.config in BERT_CONFIGS else "SmolLM2-135M"


def finish(args, dev, cuda, sizes, peaks, work, layerwise) -> dict:
    """The report: sizes, per-stage records and totals (a run stopped by ``--until`` included)."""
    import torch
    from run_all import cpu_model

    peaks.close()
    fwd = peaks.records.get("forward", {}).get("wall_s")
    for rec in peaks.records.values():
        rec["ratio_to_reference"] = round(rec["wall_s"] / fwd, 3) if fwd else None
    return {
        "config": args.config, "n_layers_asked": args.n_layers, "tokenizer": tokenizer_of(args),
        "layerwise": layerwise, "until": args.until,
        "story": args.story, "units": args.units, "device": dev,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "cpu": cpu_model(), "torch_threads": torch.get_num_threads(),
        "sizes": sizes, "stages": peaks.records,
        "total_wall_s": round(sum(r["wall_s"] for r in peaks.records.values()), 3),
        "peak_rss_gib": max(r["peak_rss_gib"] for r in peaks.records.values()),
        "peak_gpu_gib": max((r.get("peak_gpu_gib", 0.0) for r in peaks.records.values()), default=None)
        if cuda else None,
        "work": str(work),
    }


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    from extraction import RANDOM_CONFIGS

    ap.add_argument("--config", default="llama3-8b", choices=sorted(RANDOM_CONFIGS),
                    help="the random model's shapes (tiny: a toy for CPU smoke runs)")
    ap.add_argument("--n-layers", type=int, default=None, help="fewer layers than the config's")
    ap.add_argument("--tokenizer", default=None, help="a model whose tokenizer reads the story (default: "
                    "all-MiniLM-L6-v2's WordPiece for bert-base, SmolLM2-135M's BPE otherwise)")
    ap.add_argument("--layerwise", choices=["auto", "on", "off"], default="auto",
                    help="decoder layers hold float32 weights only while they run (auto: on a CPU, "
                    "when the weights would take over half the RAM)")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help="skip the plain forward pass (the reference every stage's ratio is taken to)")
    ap.add_argument("--until", choices=["extraction", "dictionary", "mapping"], default="mapping",
                    help="the last stage to run")
    ap.add_argument("--collect", nargs="+", default=None, metavar="RUN_JSON",
                    help="no run: add these full reports (--out files of earlier runs) to --report")
    ap.add_argument("--report", default=None, help="add this run's stages to a summary JSON "
                    "({'device', 'runs': [{model, stage, wall_s, peak_rss_gib, ratio_to_reference}]})")
    ap.add_argument("--story", default="slumlordreach", help="Narratives story (default: the longest, 5,344 words)")
    ap.add_argument("--narratives-dir", default=str(REPO.parent / "shared" / "narratives"))
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--dtype", default=None, help="bf16 | fp16 | float32 (half types on a GPU only)")
    ap.add_argument("--units", choices=["output", "hidden"], default="output")
    ap.add_argument("--context-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=None,
                    help="windows per forward call (default 8; layerwise: all in one call)")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--dict-iter", type=int, default=300)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--resolution-mm", type=float, default=6.0)
    ap.add_argument("--n-perm", type=int, default=1000, help="ISC null of the fMRI stage")
    ap.add_argument("--fbn-perm", type=int, default=5000, help="spin null of the mapping")
    ap.add_argument("--work", default=None, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--out", default=None, help="also write the JSON report here")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse(argv)
    if args.collect:  # rebuild the summary from full reports of earlier runs (--out files)
        if not args.report:
            raise SystemExit("--collect needs --report (the summary to write)")
        rep = {}
        for f in args.collect:
            rep = add_to_report(Path(args.report), json.loads(Path(f).read_text()))
        return rep
    res = run(args)
    text = json.dumps(res, indent=1, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.report:
        add_to_report(Path(args.report), res)
    return res


def add_to_report(path: Path, res: dict) -> dict:
    """Add (or replace) this run's rows in the summary ``path``: one row per stage, keyed by
    model and stage; a report of another device is refused."""
    device = "cpu" if res["device"].startswith("cpu") else res["device"]
    rep = json.loads(path.read_text()) if path.exists() else {"device": device, "runs": []}
    if rep.get("device") != device:
        raise SystemExit(f"{path}: a report of device {rep.get('device')!r}, this run is on {device!r}")
    model = res["config"] + (f" ({res['n_layers_asked']} layers)" if res["n_layers_asked"] else "")
    rows = [{"model": model, "stage": name, "wall_s": rec["wall_s"], "peak_rss_gib": rec["peak_rss_gib"],
             "ratio_to_reference": rec["ratio_to_reference"],
             **{k: rec[k] for k in ("layer_build_s", "tokens", "n_tokens_processed") if k in rec}}
            for name, rec in res["stages"].items()]
    rep["runs"] = [r for r in rep["runs"] if r["model"] != model] + rows
    m = res["stages"].get("model", {})
    rep.setdefault("models", {})[model] = {
        "config": res["config"], "story": res["story"], "tokenizer": res["tokenizer"],
        "layerwise": res["layerwise"], "dtype": m.get("dtype"), "n_params": m.get("n_params"),
        "until": res.get("until", "mapping"), "sizes": res["sizes"],
        "total_wall_s": res["total_wall_s"], "peak_rss_gib": res["peak_rss_gib"]}
    rep.setdefault("machine", {}).update(cpu=res["cpu"], torch_threads=res["torch_threads"])
    path.write_text(json.dumps(rep, indent=1) + "\n")
    return rep


if __name__ == "__main__":
    main()
