"""Planted couplings of a synthetic twin: the defaults (:data:`DEFAULT_PLANT`,
:data:`DEFAULT_SNR`), their validation, and which plants carry a signal (:func:`check_plants`,
:func:`live_plants`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

from ..errors import ParameterError
from .features import sentence_ends

log = logging.getLogger(__name__.rpartition(".")[0])  # "llmbrain_utils.fmri", as before the split


#: Calibrated default amplitude of a planted signal relative to the noise (SD ratio) at a
#: network's peak voxel for a subject of unit gain: single-subject peak-voxel r ~ 0.3-0.45 and
#: leave-one-out ISC ~ 0.25-0.35 in planted networks, as in published Narratives values.
DEFAULT_SNR = 0.36


#: Planted couplings of the default synthetic data set, in the network names of Seitzman et
#: al. 2018 (nilearn.datasets.fetch_coords_seitzman_2018). Five networks carry signal; the
#: others (SomatomotorDorsal, SomatomotorLateral, DorsalAttention, FrontoParietal, Salience,
#: Reward, ParietoMedial, MedialTemporalLobe, unassigned) carry none.
DEFAULT_PLANT: tuple[dict, ...] = (
    {"network": "Auditory", "source": "word_rate", "sign": 1, "weight": 1.0},
    {"network": "VentralAttention", "source": "word_length", "sign": 1, "weight": 0.9},
    {"network": "DefaultMode", "source": "drift", "sign": 1, "weight": 0.6},
    {"network": "CinguloOpercular", "source": "sentence_end", "sign": 1, "weight": 0.8},
    {"network": "Visual", "source": "word_rate", "sign": -1, "weight": 0.7},
)


def _validate_plant(plant, network_names, feature_names, n_tc) -> list[dict]:
    if isinstance(plant, dict) or not isinstance(plant, Iterable):
        raise ParameterError("plant", f"{type(plant).__name__}", expected="a list of dicts")
    out = []
    for i, p in enumerate(plant):
        if not isinstance(p, dict):
            raise ParameterError(f"plant[{i}]", f"{p!r}", expected="a dict with network, source, sign, weight")
        unknown = set(p) - {"network", "source", "sign", "weight"}
        if unknown:
            raise ParameterError(f"plant[{i}]", f"unknown key(s) {sorted(unknown)}",
                                 expected="network, source, sign, weight")
        net, src = p.get("network"), p.get("source")
        if net not in network_names:
            raise ParameterError(f"plant[{i}].network", f"{net!r}", expected=f"one of {list(network_names)}")
        if isinstance(src, str) and src.startswith("timecourse:"):
            idx = src.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= n_tc:
                raise ParameterError(f"plant[{i}].source", f"{src!r}",
                                     expected=f"'timecourse:i' with 0 <= i < {n_tc} (columns of timecourses)")
        elif src not in feature_names:
            raise ParameterError(f"plant[{i}].source", f"{src!r}",
                                 expected=f"one of {list(feature_names)} or 'timecourse:i'")
        sign = p.get("sign", 1)
        if sign not in (1, -1) or isinstance(sign, bool):
            raise ParameterError(f"plant[{i}].sign", f"{sign!r}", expected="+1 or -1")
        weight = p.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ParameterError(f"plant[{i}].weight", f"{weight!r}", expected="a number > 0")
        out.append({"network": net, "source": src, "sign": int(sign), "weight": float(weight)})
    return out


def live_plants(truth: dict) -> list[dict]:
    """The planted couplings of a twin's ``truth.json`` that carry a signal.

    A plant whose source is constant over the scan (a stimulus feature that
    :func:`stimulus_features` set to 0) is written with ``"live": false``; entries without the
    key (all plants live, or a truth file from before the key) count as live.
    """
    return [p for p in truth.get("plant", []) if p.get("live", True)]


def check_plants(entries: list[dict], sources: dict, n_trs: int, words,
                 sentence_pause_s: float | None) -> tuple[list[bool], list[dict]]:
    """Which plants of a twin are live: a plant whose source is constant over the ``n_trs`` TRs
    (a stimulus feature set to 0, e.g. sentence ends in a word table without any) carries no
    signal. Returns ``(live, dead_plants)``: one flag per entry, and per dead entry
    ``{"network", "source", "reason"}`` (each logged as a warning). Every plant dead is a
    ParameterError naming the constant sources and why. Used by the volume twin and the
    surface twin alike."""
    dead_src = [n for n, v in sources.items() if np.ptp(np.asarray(v)) == 0]
    live = [e["source"] not in dead_src for e in entries]
    n_ends, ends_inferred = sentence_ends(words, sentence_pause_s)

    def dead_reason(src: str) -> str:
        why = f"stimulus feature {src!r} is constant over the {int(n_trs)} TRs (set to 0)"
        if src in ("sentence_end", "drift"):
            why += (f"; the word table has {n_ends} sentence end(s)"
                    + (f" (inferred from pauses >= {sentence_pause_s:g} s)" if ends_inferred else ""))
        return why

    dead_plants = [{"network": e["network"], "source": e["source"], "reason": dead_reason(e["source"])}
                   for e, ok in zip(entries, live) if not ok]
    if dead_plants and not any(live):
        raise ParameterError("plant", "every plant is dead: constant source(s) "
                             + "; ".join(dead_reason(n) for n in dead_src),
                             expected="at least one plant whose source varies over the scan "
                                      "(e.g. word_rate, word_length, pause, or 'timecourse:i')")
    for d in dead_plants:
        log.warning("plant %s <- %s is dead: %s; the network is not planted by it",
                    d["network"], d["source"], d["reason"])
    return live, dead_plants
