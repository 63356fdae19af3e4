"""Clean-clip figures of a text-audio embedding (clap-tiny) on one or more corpus splits, side by side.

An audio-only release (mosaic-tiny) gets :func:`bench.embedding.train.score_bank`'s 5-fold probe
accuracy instead.

``promptsep bench clap --checkpoint checkpoints/promptsep-clap-tiny --corpus /work/corpus --split test,test_in``

For every split, every clip of the split (its first ``max_clip_s`` seconds, as in training's
evaluation, :class:`bench.embedding.train.MelBank`) is embedded and compared with the text
embeddings of the split's labels (each label's prompt variants averaged, as
:func:`bench.embedding.train.score_bank` does):

- zero-shot accuracy: the clip's nearest label is its own (chance ``1 / labels``);
- text-to-audio recall@k: per label present, the share of the top-``k`` clips that carry it
  (normalised by ``min(k, clips of the label)``), averaged over labels.

The point figures are :func:`bench.embedding.train.score_bank`'s; the 95 % CIs are percentile
bootstraps over clips (zero-shot) and over query labels (recall@k). ``test`` is the
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
    """Percentile bootstrap CI of the mean of ``values`` ``[N]`` (None for fewer than 2 values or no resamples)."""
    if samples <= 0 or values.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (samples, values.size))].mean(1)
    return [float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))]


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


def _scores(model, labels_of: list[str], categories: list[str], sentence: dict[str, torch.Tensor], x: np.ndarray,
            k: int, bootstrap: int, seed: int, alpha: float) -> dict[str, Any]:
    """score_bank's figures of clips with labels ``labels_of`` and embeddings ``x [N, D]``, with CIs and per category."""
    from types import SimpleNamespace

    from bench.embedding.train import score_bank

    out: dict[str, Any] = dict(score_bank(model, SimpleNamespace(labels=labels_of), sentence, x, k))
    if sentence is None:  # an audio-only model (mosaic-tiny): the K-fold probe accuracy only
        return out
    # per-clip and per-label outcomes for the CIs (same similarities as score_bank)
    labels = sorted(set(labels_of))
    y = np.array([labels.index(lab) for lab in labels_of])
    text = np.stack([torch.nn.functional.normalize(model.text_from_sentence(sentence[lab]).mean(0), dim=-1).numpy()
                     for lab in labels])
    sims = text @ (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).T
    correct = (np.argmax(sims, axis=0) == y).astype(np.float64)
    present = np.unique(y)
    rel = y[None, :] == present[:, None]
    top = np.argsort(-sims[present], axis=1)[:, :k]
    hits = np.take_along_axis(rel, top, axis=1).sum(1) / np.minimum(k, rel.sum(1))
    out["zero_shot_acc_ci"] = _ci(correct, bootstrap, seed, alpha)
    out[f"t2a_recall_at_{k}_ci"] = _ci(hits.astype(np.float64), bootstrap, seed + 1, alpha)
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
                   seen_sources: set[str] | None = None) -> dict[str, Any]:
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

    Returns:
        ``score_bank``'s figures (``clips``, ``labels``, ``zero_shot_acc``, ``zero_shot_chance``,
        ``t2a_recall_at_k``, its chance, ``t2a_map``) plus ``zero_shot_acc_ci``, ``t2a_recall_at_k_ci``,
        ``per_category``, ``split``, ``seconds`` and (with ``seen_sources``) ``unseen_sources``.

    Raises:
        InputError: ``split`` is ``train``; ValueError: the split is empty.
    """
    from bench.embedding.data import label_prompts
    from bench.embedding.train import MelBank, _sentence_tables, embed_bank
    from separation.data.clips import read_manifest

    if split == "train":
        raise InputError("clean-clip figures are measured on held-out splits only, never on train")
    t0 = time.perf_counter()
    model.eval()
    bank = MelBank(corpus, split, model.cfg.audio.mel, max_clip_s, None, seed, progress)
    has_text = hasattr(model, "text_from_sentence")
    sentence = _sentence_tables(model, label_prompts(corpus, bank.label_names))[2] if has_text else None
    x = embed_bank(model, bank)
    out = _scores(model, bank.labels, bank.categories, sentence, x, k, bootstrap, seed, alpha)
    if seen_sources is not None:
        sources = [str(r.get("source")) for r in read_manifest(corpus, split)]
        keep = [i for i, src in enumerate(sources) if src not in seen_sources]
        out["unseen_sources"] = None if not keep else _scores(
            model, [bank.labels[i] for i in keep], [bank.categories[i] for i in keep], sentence, x[keep], k,
            bootstrap, seed, alpha)
    out.update({"split": split, "k": k, "bootstrap": bootstrap, "alpha": alpha,
                "seconds": round(time.perf_counter() - t0, 1)})
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``promptsep bench clap``."""
    p = argparse.ArgumentParser(prog="promptsep bench clap",
                                description="Zero-shot accuracy and text-to-audio recall of a clap-tiny release on "
                                            "the clean clips of corpus splits, side by side, with bootstrap CIs.")
    p.add_argument("--checkpoint", default="checkpoints/promptsep-clap-tiny")
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test,test_in", help="comma-separated held-out splits")
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


def main(argv: Sequence[str] | None = None) -> int:
    """``promptsep bench clap --checkpoint DIR --corpus DIR --split test,test_in --out DIR``."""
    p = build_parser()
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from embeddings.clap import ClapTiny
    from embeddings.mosaic import MosaicTiny

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    try:
        kind = json.loads((Path(args.checkpoint) / "config.json").read_text()).get("kind")
        model = (MosaicTiny if kind == "promptsep_mosaic" else ClapTiny).from_pretrained(args.checkpoint)
        seen = None if args.no_unseen else seen_by_release(args.corpus, args.checkpoint)[1]
        results = {s: evaluate_split(model, args.corpus, s, args.k, args.max_clip_s, args.bootstrap,
                                     seen_sources=seen or None) for s in splits}
    except (InputError, FileNotFoundError, ValueError) as exc:
        print(f"promptsep bench clap: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "clap_eval.json").write_text(json.dumps({"checkpoint": args.checkpoint, "results": results}, indent=2))
    md = markdown(results)
    (out / "clap_eval.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
