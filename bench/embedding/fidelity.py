"""What mteb does not have: fidelity of the separated condition with paired bootstrap CIs.

mteb scores each condition (``reference``, ``separated``, ``mixture``) once; this layer
reads mteb's own per-item predictions (``prediction_folder``) and resamples items - the
same resample in every condition - to give percentile intervals of each condition's main
score and of

    fidelity = (separated - mixture) / (reference - mixture)

Per task, the statistic recomputed on a resample is the main score restricted to the
resampled units, from mteb's predictions: probe / zero-shot correctness per item
(accuracy), the retrieved list per query (recall@1 of the own reference; precision@5 of a
label query), the cosine per pair (average precision, scikit-learn).
Clustering uses mteb's own bootstrap experiments (``v_measures``), which the task draws
with the same seed in every condition. Each bootstrap distribution is shifted to be
centred on mteb's estimate (only its spread is used: a resample with repeated items
biases some scores, e.g. V-measure).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

CONDITIONS = ("reference", "separated", "mixture")


def fidelity(separated: float, reference: float, mixture: float, eps: float = 1e-9) -> float:
    """``(separated - mixture) / (reference - mixture)``; NaN when reference and mixture tie."""
    d = reference - mixture
    if not np.isfinite(d) or abs(d) < eps or not np.isfinite(separated):
        return float("nan")
    return float((separated - mixture) / d)


def _unit_stats(task, preds: Mapping[str, Any], subset: str) -> tuple[int, dict[str, Any]]:
    """Per condition, what a resample of units is scored from; returns (units, {cond: stat(idx) fn})."""
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import KFold

    info = task.info["subsets"][subset]
    y = np.asarray(info["y"])
    kind = task.info["task"]
    fns: dict[str, Any] = {}
    if kind == "classification":
        folds = list(KFold(n_splits=task.n_splits, shuffle=True, random_state=task.seed).split(range(len(y))))
        for c, p in preds.items():
            pred = np.full(len(y), -1)
            for (_, val), fold_pred in zip(folds, p):
                pred[val] = np.asarray(fold_pred)
            ok = (pred == y).astype(float)
            fns[c] = lambda idx, ok=ok: float(ok[idx].mean())
        return len(y), fns
    if kind == "zero_shot":
        for c, p in preds.items():
            ok = (np.argmax(np.asarray(p), axis=1) == y).astype(float)
            fns[c] = lambda idx, ok=ok: float(ok[idx].mean())
        return len(y), fns
    if kind == "pair_classification":
        i, j = info["pairs"]
        lab = y[i] == y[j]
        for c, p in preds.items():
            s = np.asarray(p["cosine_scores"])

            def ap(idx, s=s):
                if lab[idx].all() or not lab[idx].any():
                    return float("nan")
                return float(average_precision_score(lab[idx], s[idx]))

            fns[c] = ap
        return len(lab), fns
    if kind in ("audio_to_reference", "text_to_audio"):
        qrels = info["qrels"]
        qids = sorted(qrels, key=lambda q: int(q[1:]))
        k = 1 if kind == "audio_to_reference" else 5
        for c, p in preds.items():
            per_q = []
            for q in qids:
                ranked = sorted(p.get(q, {}).items(), key=lambda kv: -kv[1])[:k]
                hits = sum(d in qrels[q] for d, _ in ranked)
                per_q.append(hits / k)
            v = np.asarray(per_q, dtype=float)
            fns[c] = lambda idx, v=v: float(v[idx].mean())
        return len(qids), fns
    raise KeyError(kind)


def read_predictions(folder: str | Path, task_name: str, subset: str = "all") -> dict[str, Any]:
    """mteb's saved predictions of one task: ``{condition: predictions}``."""
    d = json.loads((Path(folder) / f"{task_name}_predictions.json").read_text())
    return dict(d.get(subset) or {})


def bootstrap(task, scores: Mapping[str, float], prediction_folder: str | Path | None = None,
              mteb_scores: Mapping[str, Mapping[str, Any]] | None = None, n_boot: int = 200, seed: int = 0,
              alpha: float = 0.05, subset: str = "all") -> dict[str, Any]:
    """Paired bootstrap of one mteb task (one of its subsets) evaluated on every condition.

    Args:
        task: the task built by :func:`bench.embedding.tasks.build_task` (its ``info``).
        scores: condition -> mteb main score (the estimates).
        prediction_folder: where ``mteb.evaluate`` saved the predictions.
        mteb_scores: condition -> mteb's full scores dict (clustering: its ``v_measures``).
        n_boot: resamples (0: estimates only).
        subset: the task's mteb subset (``all`` or a category).

    Returns:
        ``{"scores": {cond: main}, "ci": {cond: [lo, hi]}, "fidelity", "fidelity_ci",
        "fidelity_stable"}`` (``fidelity`` only when all three conditions exist;
        ``fidelity_stable``: the interval of reference - mixture excludes 0).
    """
    conds = [c for c in task.info["conditions"] if c in scores]
    has_fid = all(c in conds for c in CONDITIONS)
    out: dict[str, Any] = {"scores": {c: float(scores[c]) for c in conds}, "ci": {}, "fidelity": None,
                           "fidelity_ci": None, "fidelity_stable": None}
    if has_fid:
        out["fidelity"] = fidelity(scores["separated"], scores["reference"], scores["mixture"])
    if n_boot <= 0:
        return out
    boot: dict[str, np.ndarray] = {}
    if task.info["task"] == "clustering":
        for c in conds:
            vals = (mteb_scores or {}).get(c, {}).get("v_measures", {}).get("Level 0")
            boot[c] = np.asarray(vals, dtype=float) if vals else np.full(1, np.nan)
        n = min(len(v) for v in boot.values())
        boot = {c: v[:n] for c, v in boot.items()}
    else:
        preds = read_predictions(prediction_folder, task.metadata.name, subset)
        units, fns = _unit_stats(task, {c: preds[c] for c in conds}, subset)
        rng = np.random.default_rng([seed, units, n_boot])
        boot = {c: np.empty(n_boot) for c in conds}
        for b in range(n_boot):
            idx = rng.integers(0, units, size=units)
            for c in conds:
                boot[c][b] = fns[c](idx)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in conds:  # spread of the bootstrap, centred on mteb's estimate
            if np.isfinite(boot[c]).any():
                boot[c] = boot[c] + (scores[c] - np.nanmedian(boot[c]))
                lo, hi = np.nanpercentile(boot[c], q)  # every main score lies in [0, 1]
                out["ci"][c] = [float(np.clip(lo, 0.0, 1.0)), float(np.clip(hi, 0.0, 1.0))]
        if has_fid:
            fid = np.array([fidelity(s, r, m) for s, r, m in zip(boot["separated"], boot["reference"], boot["mixture"])])
            if np.isfinite(fid).any():
                out["fidelity_ci"] = [float(v) for v in np.nanpercentile(fid, q)]
            gap = boot["reference"] - boot["mixture"]
            if np.isfinite(gap).any():
                lo, hi = np.nanpercentile(gap, q)
                out["fidelity_stable"] = bool(lo > 0 or hi < 0)
    return out
