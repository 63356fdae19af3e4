"""Clean-clip figures of text-audio (clap-tiny) and audio-only (mosaic-tiny) releases on corpus splits, side by side.

An audio-only release (mosaic-tiny) gets :func:`bench.embedding.train.score_bank`'s 5-fold probe
accuracy instead, plus the pooled out-of-fold probe accuracy with its CI; ``--logmel`` adds the
same probe on log-mel statistics (mean and std over time of each clip's 64-band log-mel) as a baseline.

``promptsep bench clap --checkpoint checkpoints/promptsep-clap-tiny --corpus /work/corpus --split test,test_in``

Several named releases in one run (one table each):
``promptsep bench clap --clap shipped=checkpoints/promptsep-clap-tiny --clap new=DIR --mosaic ssl=DIR
--logmel --split valid,test,test_in --recall-ci clips --corpus /work/corpus --out DIR``

For every split, every clip of the split (its first ``max_clip_s`` seconds, as in training's
evaluation, :class:`bench.embedding.train.MelBank`) is embedded and compared with the text
embeddings of the split's labels (each label's prompt variants averaged, as
:func:`bench.embedding.train.score_bank` does):

- zero-shot accuracy: the clip's nearest label is its own (chance ``1 / labels``);
- text-to-audio recall@k: per label present, the share of the top-``k`` clips that carry it
  (normalised by ``min(k, clips of the label)``), averaged over labels.

The point figures are :func:`bench.embedding.train.score_bank`'s; the 95 % CIs are percentile
bootstraps over clips (zero-shot, out-of-fold probe) and over query labels (recall@k; ``--recall-ci clips``:
over clips, the recall recomputed on each resampled set). ``test`` is the
source-disjoint split, ``test_in`` the in-distribution one (docs/CORPUS.md). A release trained
on an older corpus build may have seen sources that this build holds out, so the figures are also
given on the clips of sources the release never saw (:func:`seen_by_release`, from the training
groups its ``config.json`` records).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptsep.errors import InputError


def _ci(values: np.ndarray, samples: int, seed: int, alpha: float) -> list[float] | None:
    """Percentile bootstrap CI of the mean of ``values`` ``[N]`` (:func:`bench.report.bootstrap_ci`;
    None for fewer than 2 values or no resamples)."""
    if samples <= 0 or values.size < 2:
        return None
    from bench.report import bootstrap_ci

    r = bootstrap_ci(values.tolist(), samples, seed, alpha)
    return [r["lo"], r["hi"]]


def t2a_recall(sims: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Text-to-audio recall@k of ``sims [L, N]`` (rows = labels): mean over the labels present in ``y [N]``
    of the share of relevant clips among the top ``k`` (normalised by ``min(k, clips of the label)``)."""
    present = np.unique(y)
    top = np.argsort(-sims[present], axis=1)[:, :k]
    rel = y[None, :] == present[:, None]
    return float((np.take_along_axis(rel, top, axis=1).sum(1) / np.minimum(k, rel.sum(1))).mean())


def recall_ci_over_clips(sims: np.ndarray, y: np.ndarray, k: int, samples: int, seed: int, alpha: float
                         ) -> list[float] | None:
    """Percentile bootstrap CI of :func:`t2a_recall`, clips resampled with replacement (None: no resamples)."""
    if samples <= 0 or y.size < 2:
        return None
    rng = np.random.default_rng(seed)
    vals = [t2a_recall(sims[:, idx], y[idx], k) for idx in (rng.integers(0, y.size, y.size) for _ in range(samples))]
    return [float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))]


def probe_predictions(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray | None:
    """Out-of-fold predictions ``[N]`` of :func:`bench.embedding.long_audio.probe_accuracy`'s probe (same folds)
    on features ``x [N, D]``; None when no label has 2 clips."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.unique(y, return_counts=True)[1]
    if counts.max() < 2:
        return None
    cv = StratifiedKFold(n_splits=int(max(2, min(folds, counts.max()))), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        return cross_val_predict(probe, x, y, cv=cv)


def logmel_stats(bank) -> np.ndarray:
    """Mean and std over time of each clip's log-mel ``[N, 2M]`` (the ``logmel-stats`` probe baseline)."""
    return np.stack([torch.cat([m.float().mean(-1), m.float().std(-1, unbiased=False)]).numpy()
                     for m in bank.mels])


def seen_by_release(corpus: str | Path, release: str | Path) -> tuple[set[str], set[str]]:
    """Groups and sources of the corpus that a release was trained on.

    A release's ``config.json`` lists its training groups (``training.train_groups``); a corpus
    clip is *seen* when its ``group`` is one of them, and its ``source`` counts as seen when any
    clip of that source (any split) is in such a group. Releases trained on an older corpus
    build may have seen sources that this corpus holds out as ``test``.

    Returns:
        ``(groups, sources)``; both empty when the release records no training groups.
    """
    from separation.data.clips import read_manifest

    cfg = json.loads((Path(release) / "config.json").read_text())
    groups = set((cfg.get("training") or {}).get("train_groups") or [])
    sources = {str(r.get("source")) for r in read_manifest(corpus) if r.get("group") in groups}
    return groups, sources


def _scores(model, labels_of: list[str], categories: list[str], sentence: dict[str, torch.Tensor] | None,
            x: np.ndarray, k: int, bootstrap: int, seed: int, alpha: float, recall_ci: str = "labels"
            ) -> dict[str, Any]:
    """score_bank's figures of clips with labels ``labels_of`` and embeddings ``x [N, D]``, with CIs and per category."""
    from types import SimpleNamespace

    from bench.embedding.train import score_bank

    out: dict[str, Any] = dict(score_bank(model, SimpleNamespace(labels=labels_of), sentence, x, k))
    labels = sorted(set(labels_of))
    y = np.array([labels.index(lab) for lab in labels_of])
    if sentence is None:  # audio-only features (mosaic-tiny, log-mel statistics): the K-fold probe
        pred = probe_predictions(x, y)
        correct = None if pred is None else (pred == y).astype(np.float64)
        out["probe_oof_acc"] = float("nan") if correct is None else float(correct.mean())
        out["probe_oof_acc_ci"] = None if correct is None else _ci(correct, bootstrap, seed, alpha)
        return out
    # per-clip and per-label outcomes for the CIs (same similarities as score_bank)
    text = np.stack([torch.nn.functional.normalize(model.text_from_sentence(sentence[lab]).mean(0), dim=-1).numpy()
                     for lab in labels])
    sims = text @ (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).T
    correct = (np.argmax(sims, axis=0) == y).astype(np.float64)
    present = np.unique(y)
    rel = y[None, :] == present[:, None]
    top = np.argsort(-sims[present], axis=1)[:, :k]
    hits = np.take_along_axis(rel, top, axis=1).sum(1) / np.minimum(k, rel.sum(1))
    out["zero_shot_acc_ci"] = _ci(correct, bootstrap, seed, alpha)
    out[f"t2a_recall_at_{k}_ci"] = (recall_ci_over_clips(sims, y, k, bootstrap, seed, alpha) if recall_ci == "clips"
                                    else _ci(hits.astype(np.float64), bootstrap, seed + 1, alpha))
    per_cat: dict[str, dict[str, Any]] = {}
    cats = np.array(categories)
    for c in sorted(set(categories)):
        sel = cats == c
        per_cat[c] = {"clips": int(sel.sum()), "zero_shot_acc": float(correct[sel].mean()),
                      "zero_shot_acc_ci": _ci(correct[sel], bootstrap, seed, alpha)}
    out["per_category"] = per_cat
    return out


@torch.no_grad()
def evaluate_split(model, corpus: str | Path, split: str, k: int = 5, max_clip_s: float = 10.0,
                   bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05, progress: bool = True,
                   seen_sources: set[str] | None = None, recall_ci: str = "labels", bank=None) -> dict[str, Any]:
    """Zero-shot accuracy and text-to-audio recall@k of ``model`` on the clean clips of one split, with CIs.

    Args:
        model: a :class:`embeddings.clap.ClapTiny` (``sentence``, ``text_from_sentence``, audio tower).
        corpus: corpus folder (``manifest.jsonl``).
        split: corpus split (never ``train``).
        k: recall cut-off.
        max_clip_s: seconds read per clip.
        bootstrap / seed / alpha: percentile CIs (0 resamples: none).
        progress: progress bars.
        seen_sources: sources the model was trained on (:func:`seen_by_release`); when given, the
            figures are also computed on the clips of the other sources only (``unseen_sources``).
        recall_ci: ``"labels"`` (resample query labels) or ``"clips"`` (resample clips, recompute recall@k).
        bank: a :class:`bench.embedding.train.MelBank` of the split with the model's log-mel settings
            (built here when None; pass one to share it between releases).

    Returns:
        ``score_bank``'s figures (``clips``, ``labels``, ``zero_shot_acc``, ``zero_shot_chance``,
        ``t2a_recall_at_k``, its chance, ``t2a_map``) plus ``zero_shot_acc_ci``, ``t2a_recall_at_k_ci``,
        ``per_category``, ``split``, ``seconds`` and (with ``seen_sources``) ``unseen_sources``; an
        audio-only model: ``probe_acc``, ``probe_majority``, ``probe_oof_acc`` and ``probe_oof_acc_ci``.

    Raises:
        InputError: ``split`` is ``train``; ValueError: the split is empty.
    """
    from bench.embedding.data import label_prompts
    from bench.embedding.train import MelBank, _sentence_tables, embed_bank
    from separation.data.clips import read_manifest

    _check_split(split)
    if recall_ci not in ("labels", "clips"):
        raise InputError(f"recall_ci must be 'labels' or 'clips', got {recall_ci!r}")
    t0 = time.perf_counter()
    model.eval()
    bank = bank if bank is not None else MelBank(corpus, split, model.cfg.audio.mel, max_clip_s, None, seed, progress)
    has_text = hasattr(model, "text_from_sentence")
    sentence = _sentence_tables(model, label_prompts(corpus, bank.label_names))[2] if has_text else None
    x = embed_bank(model, bank)
    out = _scores(model, bank.labels, bank.categories, sentence, x, k, bootstrap, seed, alpha, recall_ci)
    if seen_sources is not None:
        sources = [str(r.get("source")) for r in read_manifest(corpus, split)]
        keep = [i for i, src in enumerate(sources) if src not in seen_sources]
        out["unseen_sources"] = None if not keep else _scores(
            model, [bank.labels[i] for i in keep], [bank.categories[i] for i in keep], sentence, x[keep], k,
            bootstrap, seed, alpha, recall_ci)
    out.update({"split": split, "k": k, "bootstrap": bootstrap, "alpha": alpha,
                "seconds": round(time.perf_counter() - t0, 1)})
    return out


def _check_split(split: str) -> None:
    if split == "train":
        raise InputError("clean-clip figures are measured on held-out splits only, never on train")


def evaluate_logmel(corpus: str | Path, split: str, max_clip_s: float = 10.0, bootstrap: int = 1000, seed: int = 0,
                    alpha: float = 0.05, progress: bool = True, bank=None) -> dict[str, Any]:
    """The probe figures of :func:`evaluate_split` on log-mel statistics (:func:`logmel_stats`), a baseline.

    Args:
        corpus / split / max_clip_s / bootstrap / seed / alpha / progress: as :func:`evaluate_split`.
        bank: a :class:`bench.embedding.train.MelBank` of the split with the default log-mel settings
            (built here when None).

    Returns:
        ``clips``, ``labels``, ``probe_acc``, ``probe_majority``, ``probe_oof_acc``, ``probe_oof_acc_ci``,
        ``split``, ``seconds``.

    Raises:
        InputError: ``split`` is ``train``; ValueError: the split is empty.
    """
    from bench.embedding.train import MelBank
    from embeddings.logmel import MelConfig

    _check_split(split)
    t0 = time.perf_counter()
    bank = bank if bank is not None else MelBank(corpus, split, MelConfig(), max_clip_s, None, seed, progress)
    out = _scores(None, bank.labels, bank.categories, None, logmel_stats(bank), 5, bootstrap, seed, alpha)
    out.update({"split": split, "k": 5, "bootstrap": bootstrap, "alpha": alpha,
                "seconds": round(time.perf_counter() - t0, 1)})
    return out


DEFAULT_CHECKPOINT = "checkpoints/promptsep-clap-tiny"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``promptsep bench clap``."""
    p = argparse.ArgumentParser(prog="promptsep bench clap",
                                description="Zero-shot accuracy and text-to-audio recall of clap-tiny releases "
                                            "(probe accuracy of mosaic-tiny releases) on the clean clips of corpus "
                                            "splits, side by side, with bootstrap CIs.")
    p.add_argument("--checkpoint", default=None,
                   help=f"one release, its kind read from config.json (default {DEFAULT_CHECKPOINT} when no "
                        "--clap/--mosaic is given)")
    p.add_argument("--clap", action="append", default=[], metavar="NAME=DIR", help="a named clap-tiny release "
                                                                                    "(repeatable)")
    p.add_argument("--mosaic", action="append", default=[], metavar="NAME=DIR", help="a named mosaic-tiny release "
                                                                                      "(repeatable)")
    p.add_argument("--logmel", action="store_true", help="add the probe on log-mel statistics as a baseline")
    p.add_argument("--recall-ci", choices=("labels", "clips"), default="labels",
                   help="bootstrap unit of the recall@k CI: query labels, or clips (recall recomputed)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test,test_in", help="comma-separated held-out splits (valid, test, test_in ...)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--max-clip-s", type=float, default=10.0)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="folder for clap_eval.json and clap_eval.md")
    p.add_argument("--no-unseen", action="store_true",
                   help="do not add the figures on clips of sources the release was not trained on")
    return p


def _cell(r: dict[str, Any], key: str) -> str:
    ci = r.get(f"{key}_ci")
    return f"{100 * r[key]:.1f} %" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """Side-by-side markdown table of :func:`evaluate_split` results ``{split: result}``."""
    from bench.card import SPLIT_LABELS as names

    results = dict(results)
    for sp in list(results):
        if results[sp].get("unseen_sources"):
            results[f"{sp}, sources unseen by the model"] = {**results[sp]["unseen_sources"], "k": results[sp]["k"]}
    splits = list(results)
    k = next(iter(results.values()))["k"] if results else 5
    lines = ["| figure | " + " | ".join(names.get(s, s) for s in splits) + " |", "| --- |" + " --- |" * len(splits)]
    lines.append("| clips / labels | " + " | ".join(f"{int(results[s]['clips'])} / {int(results[s]['labels'])}"
                                                   for s in splits) + " |")
    if "zero_shot_acc" not in next(iter(results.values())):
        lines.append("| probe accuracy (5-fold) | " + " | ".join(f"{100 * results[s]['probe_acc']:.1f} %"
                                                                  for s in splits) + " |")
        if all("probe_oof_acc" in results[s] for s in splits):
            lines.append("| probe accuracy, pooled out-of-fold | " + " | ".join(
                _cell(results[s], "probe_oof_acc") for s in splits) + " |")
        lines.append("| majority class | " + " | ".join(f"{100 * results[s]['probe_majority']:.1f} %"
                                                         for s in splits) + " |")
        return "\n".join(lines) + "\n"
    lines.append("| zero-shot accuracy | " + " | ".join(_cell(results[s], "zero_shot_acc") for s in splits) + " |")
    lines.append("| zero-shot chance | " + " | ".join(f"{100 * results[s]['zero_shot_chance']:.1f} %"
                                                      for s in splits) + " |")
    lines.append(f"| text-to-audio R@{k} | " + " | ".join(_cell(results[s], f"t2a_recall_at_{k}") for s in splits)
                 + " |")
    lines.append(f"| text-to-audio R@{k} chance | " + " | ".join(
        f"{100 * results[s][f't2a_recall_at_{k}_chance']:.1f} %" for s in splits) + " |")
    lines.append("| text-to-audio mAP | " + " | ".join(f"{100 * results[s]['t2a_map']:.1f} %" for s in splits) + " |")
    cats = sorted({c for r in results.values() for c in r["per_category"]})
    for c in cats:
        cells = []
        for s in splits:
            pc = results[s]["per_category"].get(c)
            cells.append("n/a" if pc is None else f"{_cell(pc, 'zero_shot_acc')} (n={pc['clips']})")
        lines.append(f"| zero-shot, {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _named(items: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for it in items:
        name, sep, path = it.partition("=")
        if not sep or not name or not path:
            raise InputError(f"expected NAME=DIR, got {it!r}")
        out.append((name, path))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep bench clap [--checkpoint DIR | --clap NAME=DIR ... --mosaic NAME=DIR ...] [--logmel] --corpus DIR
    --split test,test_in --out DIR``."""
    p = build_parser()
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from bench.embedding.train import MelBank
    from embeddings.clap import ClapTiny
    from embeddings.logmel import MelConfig
    from embeddings.mosaic import MosaicTiny

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    releases: dict[str, dict[str, Any]] = {}
    try:
        for s in splits:
            _check_split(s)
        named = [(n, d, ClapTiny) for n, d in _named(args.clap)] + [(n, d, MosaicTiny) for n, d in _named(args.mosaic)]
        if args.checkpoint or not named:
            ckpt = args.checkpoint or DEFAULT_CHECKPOINT
            kind = json.loads((Path(ckpt) / "config.json").read_text()).get("kind")
            named.insert(0, (Path(ckpt).name, ckpt, MosaicTiny if kind == "promptsep_mosaic" else ClapTiny))
        if len({n for n, _, _ in named}) != len(named):
            raise InputError("release names must be distinct")
        models = {n: (d, cls.from_pretrained(d)) for n, d, cls in named}
        banks: dict[tuple[str, str], Any] = {}

        def bank_of(split: str, mel) -> Any:
            key = (split, repr(mel))
            if key not in banks:
                banks[key] = MelBank(args.corpus, split, mel, args.max_clip_s, None, 0, True)
            return banks[key]

        for name, (ckpt, model) in models.items():
            seen = None if args.no_unseen else seen_by_release(args.corpus, ckpt)[1]
            releases[name] = {"checkpoint": ckpt, "results": {
                s: evaluate_split(model, args.corpus, s, args.k, args.max_clip_s, args.bootstrap,
                                  seen_sources=seen or None, recall_ci=args.recall_ci,
                                  bank=bank_of(s, model.cfg.audio.mel)) for s in splits}}
        baseline = {s: evaluate_logmel(args.corpus, s, args.max_clip_s, args.bootstrap,
                                       bank=bank_of(s, MelConfig())) for s in splits} if args.logmel else None
    except (InputError, FileNotFoundError, ValueError) as exc:
        print(f"promptsep bench clap: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "clap_eval.json").write_text(json.dumps({"releases": releases, "logmel_stats": baseline}, indent=2))
    parts = [f"### {name} (`{r['checkpoint']}`)\n\n{markdown(r['results'])}" for name, r in releases.items()]
    if baseline:
        parts.append(f"### log-mel statistics (probe baseline)\n\n{markdown(baseline)}")
    md = "\n".join(parts)
    (out / "clap_eval.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
