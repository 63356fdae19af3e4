"""Side-by-side scores of clap-tiny / mosaic-tiny releases with bootstrap 95 % CIs.

``python -m bench.embedding.clap_eval --clap shipped=checkpoints/promptsep-clap-tiny --clap new=DIR
--mosaic ssl=DIR --splits test test_in --out scores.json``

- clap releases: zero-shot accuracy (clip -> best label prompt) and text-to-audio recall@5
  (label query -> top-5 clips) on the clean clips of each split, exactly as the trainer's
  validation (:func:`bench.embedding.train.score_bank`);
- mosaic releases and the log-mel statistics baseline (mean and std over time of the same
  64-band log-mel): 5-fold stratified linear-probe accuracy on the split (out-of-fold predictions).

CIs: percentile bootstrap over clips (``--boot`` resamples, seeded); for recall@5 the clips are
resampled and the metric recomputed on the resampled set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch


def zero_shot_parts(sims: np.ndarray, y: np.ndarray, k: int = 5) -> tuple[np.ndarray, float]:
    """Per-clip zero-shot correctness ``[N]`` and text-to-audio recall@k of ``sims [L, N]`` (rows = labels)."""
    correct = (np.argmax(sims, axis=0) == y).astype(np.float64)
    return correct, t2a_recall(sims, y, k)


def t2a_recall(sims: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Mean over the labels present in ``y`` of the share of relevant clips among the top ``k`` (capped by count)."""
    present = np.unique(y)
    top = np.argsort(-sims[present], axis=1)[:, :k]
    rel = y[None, :] == present[:, None]
    hits = np.take_along_axis(rel, top, axis=1).sum(1) / np.minimum(k, rel.sum(1))
    return float(hits.mean())


def bootstrap_ci(values: np.ndarray, boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile CI of the mean of per-clip ``values [N]``."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(boot, len(values)))
    means = values[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def bootstrap_recall_ci(sims: np.ndarray, y: np.ndarray, k: int = 5, boot: int = 1000, seed: int = 0
                        ) -> tuple[float, float]:
    """95 % percentile CI of :func:`t2a_recall`, clips resampled with replacement."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(boot):
        idx = rng.integers(0, len(y), size=len(y))
        vals.append(t2a_recall(sims[:, idx], y[idx], k))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def probe_predictions(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of the standardised logistic-regression probe of
    :func:`bench.embedding.long_audio.probe_accuracy` (same folds)."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.unique(y, return_counts=True)[1]
    cv = StratifiedKFold(n_splits=int(max(2, min(folds, counts.max()))), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        return cross_val_predict(probe, x, y, cv=cv)


def logmel_stats(bank) -> np.ndarray:
    """Mean and std over time of each clip's log-mel ``[N, 2M]`` (the ``logmel-stats`` baseline)."""
    return np.stack([torch.cat([m.float().mean(-1), m.float().std(-1, unbiased=False)]).numpy()
                     for m in bank.mels])


def _ci_row(name: str, split: str, metric: str, value: float, ci: tuple[float, float], n: int) -> dict[str, Any]:
    return {"model": name, "split": split, "metric": metric, "value": value, "ci95": list(ci), "clips": n}


@torch.no_grad()
def evaluate(clap: dict[str, str], mosaic: dict[str, str], splits: list[str], corpus: str, boot: int = 1000,
             logmel: bool = True, progress: bool = True) -> list[dict[str, Any]]:
    """Rows ``{"model", "split", "metric", "value", "ci95", "clips"}`` for every model and split."""
    from bench.embedding.data import label_prompts
    from bench.embedding.train import MelBank, _sentence_tables, embed_bank
    from embeddings.clap import ClapTiny
    from embeddings.logmel import MelConfig
    from embeddings.mosaic import MosaicTiny

    rows: list[dict[str, Any]] = []
    models = {n: ClapTiny.from_pretrained(p) for n, p in clap.items()}
    encoders = {n: MosaicTiny.from_pretrained(p) for n, p in mosaic.items()}
    for split in splits:
        bank = MelBank(corpus, split, MelConfig(), progress=progress)
        labels = sorted(set(bank.labels))
        y = np.array([labels.index(lab) for lab in bank.labels])
        for name, model in models.items():
            sent = _sentence_tables(model, label_prompts(corpus, labels))[2]
            x = embed_bank(model, bank)
            with torch.no_grad():
                text = np.stack([torch.nn.functional.normalize(model.text_from_sentence(sent[lab]).mean(0), dim=-1)
                                 .numpy() for lab in labels])
            sims = text @ x.T
            correct, r5 = zero_shot_parts(sims, y)
            rows.append(_ci_row(name, split, "zero_shot_acc", float(correct.mean()), bootstrap_ci(correct, boot),
                                len(y)))
            rows.append(_ci_row(name, split, "t2a_recall_at_5", r5, bootstrap_recall_ci(sims, y, 5, boot), len(y)))
        feats = {n: embed_bank(m, bank) for n, m in encoders.items()}
        if logmel:
            feats["logmel-stats"] = logmel_stats(bank)
        for name, x in feats.items():
            correct = (probe_predictions(x, y) == y).astype(np.float64)
            rows.append(_ci_row(name, split, "probe_acc", float(correct.mean()), bootstrap_ci(correct, boot), len(y)))
    return rows


def _named(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        name, sep, path = it.partition("=")
        if not sep:
            raise ValueError(f"expected NAME=PATH, got {it!r}")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    """CLI (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clap", action="append", default=[], help="NAME=RELEASE_DIR (repeatable)")
    ap.add_argument("--mosaic", action="append", default=[], help="NAME=RELEASE_DIR (repeatable)")
    ap.add_argument("--splits", nargs="+", default=["test", "test_in"])
    ap.add_argument("--corpus", default="/work/corpus")
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--no-logmel", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = evaluate(_named(a.clap), _named(a.mosaic), a.splits, a.corpus, a.boot, not a.no_logmel)
    for r in rows:
        print(f"{r['model']:>16} {r['split']:>8} {r['metric']:>16} {r['value']:.3f} "
              f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] n={r['clips']}")
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
