"""MAEB/mteb-style evaluators on precomputed embeddings (scikit-learn, numpy).

Every task is *prepared* once from the embeddings of all conditions (``reference``,
``separated``, ``mixture``; arrays ``[N, D]`` with one row per benchmark item, the same
item order in every condition) and then *scored* on any subset of items, which makes
per-category scores and paired bootstrap confidence intervals cheap: a bootstrap
resample of items is scored in every condition, so the fidelity of a resample uses the
same items throughout.

Tasks (main score first):

- ``classification``: logistic-regression probe (standardised features) with stratified
  K-fold cross-validation inside each condition; ``accuracy`` of the out-of-fold
  predictions. Also ``accuracy_clean_probe``: the probe trained on the reference folds and
  applied to the condition's held-out fold (a downstream classifier trained on clean audio).
- ``clustering``: MiniBatchKMeans on L2-normalised embeddings with ``k`` = number of
  labels, ``v_measure`` against the labels (mean over seeds).
- ``zero_shot``: ``accuracy`` of the label whose prompt embedding is closest (needs text).
- ``text_to_audio``: one query per label (its prompt), ranked over the items;
  ``recall_at_5`` is the capped recall ``|relevant in top 5| / min(5, |relevant|)`` (mteb's
  ``cv_recall`` / BEIR's R_cap), plus ``map`` (needs text).
- ``audio_to_reference``: each condition stem queries the gallery of all reference stems;
  its own reference is the one relevant item: ``recall_at_1``, ``mrr``, ``recall_at_5``.
- ``pair_classification``: pairs (condition stem i, reference stem j), i != j, positive
  when both have the same label; ``ap`` = average precision of the cosine.
- ``paired_cosine``: ``cosine`` between each condition stem and its own reference.

Fidelity of a score: ``(separated - mixture) / (reference - mixture)``: 1 when separated
stems score like clean references, 0 when they are no better than the mixture.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

ScoreFn = Callable[[str, np.ndarray], dict[str, float]]

TASKS: tuple[str, ...] = (
    "classification", "clustering", "zero_shot", "text_to_audio", "audio_to_reference",
    "pair_classification", "paired_cosine",
)
#: Tasks that need an embedding model with a text tower.
TEXT_TASKS: tuple[str, ...] = ("zero_shot", "text_to_audio")
#: Tasks that compare a condition with the references (need a ``reference`` condition).
REFERENCE_TASKS: tuple[str, ...] = ("audio_to_reference", "pair_classification", "paired_cosine")
MAIN_SCORE: dict[str, str] = {
    "classification": "accuracy", "clustering": "v_measure", "zero_shot": "accuracy",
    "text_to_audio": "recall_at_5", "audio_to_reference": "recall_at_1", "pair_classification": "ap",
    "paired_cosine": "cosine",
}


def single_threaded(fn):
    """Run ``fn`` with BLAS/OpenMP pools limited to one thread (small problems on shared CPUs are
    many times faster without thread oversubscription)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            return fn(*args, **kwargs)
        with threadpool_limits(1):
            return fn(*args, **kwargs)

    return wrapper


def l2n(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def fidelity(separated: float, reference: float, mixture: float, eps: float = 1e-9) -> float:
    """``(separated - mixture) / (reference - mixture)``; NaN when reference and mixture tie."""
    d = reference - mixture
    if not np.isfinite(d) or abs(d) < eps or not np.isfinite(separated):
        return float("nan")
    return float((separated - mixture) / d)


# --------------------------------------------------------------- retrieval
def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based rank of ``targets[q]`` in row ``q`` of ``scores [Q, G]`` (higher is better; ties count against)."""
    s = np.asarray(scores)
    own = s[np.arange(s.shape[0]), targets]
    return 1 + (s > own[:, None]).sum(1) + ((s == own[:, None]).sum(1) - 1)


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank."""
    return float(np.mean(1.0 / np.asarray(ranks, dtype=np.float64)))


def recall_at_k_single(ranks: np.ndarray, k: int) -> float:
    """Share of queries whose one relevant item is in the top ``k``."""
    return float(np.mean(np.asarray(ranks) <= k))


def capped_recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query ``|relevant in top k| / min(k, |relevant|)`` for ``scores/relevant [Q, G]`` (NaN: no relevant)."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hit = np.take_along_axis(relevant, order, axis=1).sum(1)
    n_rel = relevant.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, hit / np.minimum(k, n_rel), np.nan)


def average_precision_rows(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per query average precision of ``scores [Q, G]`` against ``relevant [Q, G]``."""
    order = np.argsort(-scores, axis=1, kind="stable")
    rel = np.take_along_axis(relevant, order, axis=1).astype(np.float64)
    cum = np.cumsum(rel, axis=1)
    prec = cum / np.arange(1, rel.shape[1] + 1)
    n_rel = rel.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, (prec * rel).sum(1) / n_rel, np.nan)


def chance_capped_recall(y: np.ndarray, k: int) -> float:
    """Expected capped recall@k of a random ranking, one query per label present in ``y``."""
    n = len(y)
    vals = []
    for q in np.unique(y):
        n_rel = int((y == q).sum())
        vals.append(min(k, n) * n_rel / n / min(k, n_rel))
    return float(np.mean(vals))


def v_measure(labels: np.ndarray, clusters: np.ndarray) -> float:
    """V-measure (beta 1) of a clustering; same value as ``sklearn.metrics.v_measure_score``,
    without its input checks (the bootstrap calls it thousands of times)."""
    _, li = np.unique(labels, return_inverse=True)
    _, ci = np.unique(clusters, return_inverse=True)
    n = len(li)
    if n == 0 or (li.max() == 0 and ci.max() == 0):
        return 1.0
    cont = np.bincount(li * (ci.max() + 1) + ci, minlength=(li.max() + 1) * (ci.max() + 1))
    cont = cont.reshape(li.max() + 1, ci.max() + 1).astype(np.float64)
    pl, pc = cont.sum(1) / n, cont.sum(0) / n

    def entropy(p):
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    h_l, h_c = entropy(pl), entropy(pc)
    nz = cont > 0
    pj = cont[nz] / n
    mi = float((pj * (np.log(pj) - np.log(np.outer(pl, pc)[nz]))).sum())
    hom = 1.0 if h_l == 0 else mi / h_l
    com = 1.0 if h_c == 0 else mi / h_c
    return 0.0 if hom + com == 0 else float(2 * hom * com / (hom + com))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of binary ``labels`` ranked by ``scores`` (ties handled as in
    ``sklearn.metrics.average_precision_score``: one threshold per distinct score)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # end of each block of tied scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0, tp]) / n_pos
    return float((precision * recall_gain).sum())


# ------------------------------------------------------------ preparation
@dataclass
class Prepared:
    """A task ready to score any subset of items in any condition.

    Attributes:
        task: task name.
        main: name of the main score.
        conditions: conditions it can score.
        score: ``(condition, item indices) -> {metric: value}``.
        chance: expected main score of random embeddings on all items (None: unknown).
        info: extra facts (folds, k, ...).
    """

    task: str
    main: str
    conditions: list[str]
    score: ScoreFn
    chance: float | None = None
    info: dict = field(default_factory=dict)
    #: re-centre the bootstrap distribution on the estimate (scores biased by repeated items, e.g. V-measure)
    recenter: bool = False


def _probe(seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0, random_state=seed))


@single_threaded
def prepare_classification(emb: Mapping[str, np.ndarray], y: np.ndarray, folds: int = 5, seed: int = 0,
                           reference: str = "reference") -> Prepared:
    """Logistic-regression probe, stratified K-fold (folds shared by all conditions)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.unique(np.asarray(y), return_inverse=True)[1]  # any label type -> 0..L-1
    counts = np.bincount(y)
    if counts.max() < 2:  # no label has two items: nothing to cross-validate

        def nan_score(cond: str, idx: np.ndarray) -> dict[str, float]:
            return {"accuracy": float("nan")}

        return Prepared("classification", "accuracy", list(emb), nan_score, None, {"folds": 0})
    n_splits = int(max(2, min(folds, counts.max())))
    skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        splits = list(skf.split(np.zeros(len(y)), y))
    oof: dict[str, np.ndarray] = {}
    clean: dict[str, np.ndarray] = {}
    for cond in emb:
        oof[cond] = np.full(len(y), -1, dtype=np.int64)
        clean[cond] = np.full(len(y), -1, dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for tr, te in splits:
            if len(np.unique(y[tr])) < 2:
                continue
            models = {}
            for cond, x in emb.items():
                m = _probe(seed).fit(x[tr], y[tr])
                models[cond] = m
                oof[cond][te] = m.predict(x[te])
            ref_model = models.get(reference)
            for cond, x in emb.items():
                if ref_model is not None:
                    clean[cond][te] = ref_model.predict(x[te])

    def score(cond: str, idx: np.ndarray) -> dict[str, float]:
        out = {"accuracy": float(np.mean(oof[cond][idx] == y[idx]))}
        if reference in emb:
            out["accuracy_clean_probe"] = float(np.mean(clean[cond][idx] == y[idx]))
        return out

    chance = float(np.max(counts) / len(y))  # majority class
    return Prepared("classification", "accuracy", list(emb), score, chance, {"folds": n_splits})


@single_threaded
def prepare_clustering(emb: Mapping[str, np.ndarray], y: np.ndarray, seeds: Sequence[int] = (0, 1, 2)) -> Prepared:
    """MiniBatchKMeans with one cluster per label; V-measure, averaged over seeds."""
    from sklearn.cluster import MiniBatchKMeans

    y = np.asarray(y)
    k = len(np.unique(y))
    assign: dict[str, list[np.ndarray]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cond, x in emb.items():
            xs = l2n(x)
            assign[cond] = [
                MiniBatchKMeans(n_clusters=k, batch_size=min(1024, max(k, len(y))), n_init=3, random_state=s)
                .fit_predict(xs) for s in seeds
            ]

    def score(cond: str, idx: np.ndarray) -> dict[str, float]:
        vals = [v_measure(y[idx], a[idx]) for a in assign[cond]]
        return {"v_measure": float(np.mean(vals))}

    # V-measure of a resample with repeated items is biased upward (fewer distinct items per
    # cluster): the bootstrap gives the spread, re-centred on the all-item estimate.
    return Prepared("clustering", "v_measure", list(emb), score, None, {"k": k, "seeds": list(seeds)}, recenter=True)


def prepare_zero_shot(emb: Mapping[str, np.ndarray], y: np.ndarray, text_emb: np.ndarray) -> Prepared:
    """Predict the label whose text embedding ``text_emb [L, D]`` (row = label id) is closest."""
    y = np.asarray(y)
    t = l2n(text_emb)
    pred = {cond: np.argmax(l2n(x) @ t.T, axis=1) for cond, x in emb.items()}

    def score(cond: str, idx: np.ndarray) -> dict[str, float]:
        return {"accuracy": float(np.mean(pred[cond][idx] == y[idx]))}

    return Prepared("zero_shot", "accuracy", list(emb), score, 1.0 / len(t), {"labels": len(t)})


def prepare_text_to_audio(emb: Mapping[str, np.ndarray], y: np.ndarray, text_emb: np.ndarray,
                          k: int = 5) -> Prepared:
    """One text query per label present, items ranked by cosine; capped recall@k and mAP."""
    y = np.asarray(y)
    t = l2n(text_emb)
    sims = {cond: t @ l2n(x).T for cond, x in emb.items()}  # [L, N]

    def score(cond: str, idx: np.ndarray) -> dict[str, float]:
        yi = y[idx]
        queries = np.unique(yi)
        s = sims[cond][queries][:, idx]
        rel = yi[None, :] == queries[:, None]
        return {f"recall_at_{k}": float(np.nanmean(capped_recall_at_k(s, rel, k))),
                "map": float(np.nanmean(average_precision_rows(s, rel)))}

    return Prepared("text_to_audio", f"recall_at_{k}", list(emb), score, chance_capped_recall(y, k),
                    {"k": k, "queries": int(len(np.unique(y)))})


def prepare_audio_to_reference(emb: Mapping[str, np.ndarray], reference: str = "reference") -> Prepared:
    """Each condition stem queries all reference stems; its own reference is relevant."""
    g = l2n(emb[reference])
    n = len(g)
    ranks = {cond: target_ranks(l2n(x) @ g.T, np.arange(n)) for cond, x in emb.items()}

    def score(cond: str, idx: np.ndarray) -> dict[str, float]:
        r = ranks[cond][idx]
        return {"recall_at_1": recall_at_k_single(r, 1), "mrr": mrr(r), "recall_at_5": recall_at_k_single(r, 5)}

    return Prepared("audio_to_reference", "recall_at_1", list(emb), score, 1.0 / n, {"gallery": n})


@single_threaded
def prepare_pair_classification(emb: Mapping[str, np.ndarray], y: np.ndarray, reference: str = "reference",
                                max_pairs: int = 5000, seed: int = 0) -> Prepared:
    """Pairs (condition stem i, reference stem j), i != j, labelled same-class; cosine AP."""
    y = np.asarray(y)
    g = l2n(emb[reference])
    sims = {cond: l2n(x) @ g.T for cond, x in emb.items()}

    def score(cond: str, idx: np.ndarray) -> dict[str, float]:
        m = len(idx)
        rng = np.random.default_rng([seed, m])
        if m * (m - 1) <= max_pairs:
            p, q = np.nonzero(~np.eye(m, dtype=bool))
        else:
            p = rng.integers(0, m, size=max_pairs)
            q = rng.integers(0, m, size=max_pairs)
        i, j = idx[p], idx[q]
        keep = i != j
        i, j = i[keep], j[keep]
        lab = y[i] == y[j]
        if lab.all() or not lab.any():
            return {"ap": float("nan")}
        return {"ap": average_precision(lab, sims[cond][i, j])}

    same = np.mean(y[:, None] == y[None, :])
    return Prepared("pair_classification", "ap", list(emb), score, float(same), {"max_pairs": max_pairs})


def prepare_paired_cosine(emb: Mapping[str, np.ndarray], reference: str = "reference") -> Prepared:
    """Cosine between each condition stem and its own reference stem."""
    g = l2n(emb[reference])
    cos = {cond: np.sum(l2n(x) * g, axis=1) for cond, x in emb.items()}

    def score(cond: str, idx: np.ndarray) -> dict[str, float]:
        return {"cosine": float(np.mean(cos[cond][idx]))}

    return Prepared("paired_cosine", "cosine", list(emb), score, None)


def prepare_tasks(emb: Mapping[str, np.ndarray], y: np.ndarray, text_emb: np.ndarray | None = None,
                  tasks: Sequence[str] = TASKS, folds: int = 5, k: int = 5, seed: int = 0,
                  reference: str = "reference") -> dict[str, Prepared]:
    """Prepare every requested task that the inputs allow (text tasks need ``text_emb``,
    reference tasks need a ``reference`` condition)."""
    out: dict[str, Prepared] = {}
    for t in tasks:
        if t not in TASKS:
            raise KeyError(f"unknown task {t!r}; known: {TASKS}")
        if t in TEXT_TASKS and text_emb is None:
            continue
        if t in REFERENCE_TASKS and reference not in emb:
            continue
        if t == "classification":
            out[t] = prepare_classification(emb, y, folds, seed, reference)
        elif t == "clustering":
            out[t] = prepare_clustering(emb, y)
        elif t == "zero_shot":
            out[t] = prepare_zero_shot(emb, y, text_emb)
        elif t == "text_to_audio":
            out[t] = prepare_text_to_audio(emb, y, text_emb, k)
        elif t == "audio_to_reference":
            out[t] = prepare_audio_to_reference(emb, reference)
        elif t == "pair_classification":
            out[t] = prepare_pair_classification(emb, y, reference, seed=seed)
        elif t == "paired_cosine":
            out[t] = prepare_paired_cosine(emb, reference)
    return out


# --------------------------------------------------------------- scoring
@single_threaded
def evaluate(prep: Prepared, subsets: Mapping[str, np.ndarray], n_boot: int = 200, seed: int = 0,
             alpha: float = 0.05) -> dict[str, dict]:
    """Score a prepared task per subset and condition, with paired bootstrap CIs and fidelity.

    Args:
        prep: a prepared task.
        subsets: subset name (``"all"``, a category) -> item indices.
        n_boot: bootstrap resamples of the items of each subset (0: no CIs).
        alpha: 1 - confidence level of the percentile intervals.

    Returns:
        ``{subset: {"n": int, "scores": {cond: {metric: value}}, "ci": {cond: [lo, hi]}
        (main score), "fidelity": float | None, "fidelity_ci": [lo, hi] | None,
        "fidelity_stable": bool}}`` (``fidelity_stable``, with a bootstrap: the interval of
        reference - mixture excludes 0; otherwise the ratio's denominator is noise).
    """
    conds = prep.conditions
    has_fid = all(c in conds for c in ("reference", "separated", "mixture"))
    out: dict[str, dict] = {}
    for name, idx in subsets.items():
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) < 2:
            continue
        scores = {c: prep.score(c, idx) for c in conds}
        entry: dict = {"n": int(len(idx)), "scores": scores, "ci": {}, "fidelity": None, "fidelity_ci": None}
        main = {c: scores[c][prep.main] for c in conds}
        if has_fid:
            entry["fidelity"] = fidelity(main["separated"], main["reference"], main["mixture"])
        if n_boot > 0:
            rng = np.random.default_rng([seed, len(idx), n_boot])
            boot = {c: np.empty(n_boot) for c in conds}
            for b in range(n_boot):
                sel = idx[rng.integers(0, len(idx), size=len(idx))]
                for c in conds:
                    boot[c][b] = prep.score(c, sel)[prep.main]
            q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if prep.recenter:
                    for c in conds:
                        if np.isfinite(boot[c]).any() and np.isfinite(main[c]):
                            boot[c] = boot[c] + (main[c] - np.nanmedian(boot[c]))
                fid = np.array([fidelity(boot["separated"][b], boot["reference"][b], boot["mixture"][b])
                                for b in range(n_boot)]) if has_fid else np.full(n_boot, np.nan)
                for c in conds:
                    entry["ci"][c] = [float(v) for v in np.nanpercentile(boot[c], q)] if np.isfinite(boot[c]).any() else None
                if has_fid and np.isfinite(fid).any():
                    entry["fidelity_ci"] = [float(v) for v in np.nanpercentile(fid, q)]
                if has_fid:
                    # the ratio is only meaningful when reference and mixture differ reliably
                    gap = boot["reference"] - boot["mixture"]
                    lo, hi = np.nanpercentile(gap, q) if np.isfinite(gap).any() else (np.nan, np.nan)
                    entry["fidelity_stable"] = bool(np.isfinite(lo) and (lo > 0 or hi < 0))
        out[name] = entry
    return out
