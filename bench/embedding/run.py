"""The embedding-fidelity benchmark: ``run_benchmark(cfg)`` and its Hydra entry point.

``python -m bench.embedding.run [overrides]`` composes ``conf/bench_embedding.yaml``;
``promptsep bench embedding ...`` (:mod:`bench.embedding.cli`) maps friendlier flags onto
the same config. Steps:

1. draw test-split mixtures (fixed seed) and keep reference stems and mixtures;
2. separate them with the Separator (or ``oracle:LEAK``; skipped when ``separator`` is null);
3. for every model: embed the three conditions (cached), prepare and score the tasks
   per category with paired bootstrap CIs and fidelity, write mteb TaskResult JSON;
4. optionally: clean test clips (zero-shot, text-to-audio, probe, clustering) and the
   long-audio segment x aggregation study;
5. ``summary.json``, ``report.md`` and PNG plots in ``out_dir``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.embedding.cache import EmbeddingCache, file_hash

logger = logging.getLogger(__name__)

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` for dicts and DictConfigs, with a default."""
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def _plain(cfg: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return cfg


def label_text_embeddings(embedder, labels: list[str], prompts: Mapping[str, list[str]]) -> np.ndarray:
    """One vector per label: the normalised mean of its prompt variants' text embeddings (prompt ensembling)."""
    from bench.embedding.tasks import l2n

    texts = [t for lab in labels for t in prompts[lab]]
    emb = l2n(embedder.embed_text(texts).numpy())
    out, s = [], 0
    for lab in labels:
        n = len(prompts[lab])
        out.append(emb[s : s + n].mean(0))
        s += n
    return l2n(np.stack(out)).astype(np.float32)


def _subsets(categories: list[str], min_items: int) -> dict[str, np.ndarray]:
    cats = np.asarray(categories)
    out = {"all": np.arange(len(cats))}
    for c in sorted(set(categories)):
        idx = np.nonzero(cats == c)[0]
        if len(idx) >= min_items:
            out[c] = idx
    return out


def evaluate_clean(embedder, items, cache: EmbeddingCache, prompts, folds: int = 5, k: int = 5, seed: int = 0,
                   progress: bool = True) -> dict[str, Any]:
    """Zero-shot, text-to-audio retrieval, probe and clustering on clean clips (one condition)."""
    from bench.embedding.tasks import prepare_tasks

    labels = sorted(set(items.labels))
    y = np.array([labels.index(lab) for lab in items.labels])
    x = cache.embed(embedder, items.reference, items.sample_rate, desc=f"{embedder.name} clean", progress=progress)
    text = label_text_embeddings(embedder, labels, prompts) if embedder.supports_text else None
    prep = prepare_tasks({"reference": x}, y, text, ("classification", "clustering", "zero_shot", "text_to_audio"),
                         folds=folds, k=k, seed=seed, reference="__none__")
    out: dict[str, Any] = {"n": len(y), "labels": len(labels)}
    idx = np.arange(len(y))
    for name, p in prep.items():
        out[name] = {**p.score("reference", idx), "chance": p.chance}
    return out


def run_benchmark(cfg: Any) -> dict[str, Any]:
    """Run the benchmark described by ``cfg`` (``conf/bench_embedding.yaml``); returns the summary.

    Args:
        cfg: a composed config (DictConfig or nested dict).

    Returns:
        The summary written to ``out_dir/summary.json`` (per model: task evaluations, clean-clip
        scores, long-audio rows; meta; plot paths).
    """
    import torch

    from bench.embedding.data import (
        label_prompts,
        load_clean_clips,
        make_long_recordings,
        make_mixture_items,
        separate_items,
    )
    from bench.embedding.long_audio import run_segment_study
    from bench.embedding.models import build_embedder
    from bench.embedding.report import TASK_NAMES, make_plots, task_result, write_json, write_report
    from bench.embedding.tasks import TASKS, evaluate, prepare_tasks

    cfg = _plain(cfg)
    torch.set_num_threads(int(_get(cfg, "threads", 2)))
    seed = int(_get(cfg, "seed", 0))
    progress = bool(_get(cfg, "progress", True))
    out = Path(_get(cfg, "out_dir", "runs/bench_embedding"))
    out.mkdir(parents=True, exist_ok=True)
    corpus = Path(_get(cfg, "corpus"))
    split = str(_get(cfg, "split", "test"))
    cache = EmbeddingCache(_get(cfg, "cache_dir"))
    device = str(_get(cfg, "device", "cpu"))
    ev = _get(cfg, "eval", {}) or {}
    folds, k = int(ev.get("folds", 5)), int(ev.get("k", 5))
    n_boot, alpha = int(ev.get("bootstrap", 200)), float(ev.get("alpha", 0.05))
    min_cat = int(ev.get("min_category_items", 10))
    tasks = list(_get(cfg, "tasks", TASKS) or TASKS)
    if not (corpus / "manifest.jsonl").is_file():
        raise FileNotFoundError(f"corpus manifest not found: {corpus / 'manifest.jsonl'}")
    if split == "train" and not bool(_get(cfg, "allow_train_split", False)):
        raise ValueError("refusing to evaluate on the train split (the models and the separator were trained on it); "
                         "use split=test, or allow_train_split=true for a smoke test")
    revision = file_hash(corpus / "manifest.jsonl")

    # ---------------------------------------------------------------- items
    separator = _get(cfg, "separator")
    if separator and not str(separator).startswith("oracle:") and not Path(str(separator)).is_dir():
        raise FileNotFoundError(f"separator checkpoint not found: {separator} (use separator=null to skip)")
    it_cfg = _get(cfg, "items", {}) or {}
    items = None
    if int(it_cfg.get("n", 200)) > 0:
        items = make_mixture_items(corpus, split, int(it_cfg.get("n", 200)), int(it_cfg.get("seed", 1234)),
                                   it_cfg.get("mix") or {}, categories=it_cfg.get("categories"),
                                   progress=progress, stratify=bool(it_cfg.get("stratify", False)))
        sp = _get(cfg, "separation", {}) or {}
        refine = sp.get("refine", "wiener")
        separate_items(items, separator, steps=int(sp.get("steps", 16)), batch_size=int(sp.get("batch_size", 8)),
                       seed=int(sp.get("seed", 0)), device=device, cache_dir=_get(cfg, "cache_dir"), progress=progress,
                       refine=None if refine in (None, "default") else str(refine))
    labels = sorted(set(items.labels)) if items is not None else []
    y = np.array([labels.index(lab) for lab in items.labels]) if items is not None else None
    subsets = _subsets(items.categories, min_cat) if items is not None else {}
    prompts = label_prompts(corpus, labels) if items is not None else {}

    clean_cfg = _get(cfg, "clean_clips", {}) or {}
    clean_items = None
    if clean_cfg.get("enabled", True):
        clean_items = load_clean_clips(corpus, split, float(clean_cfg.get("max_seconds", 10.0)),
                                       clean_cfg.get("max_clips"), seed, exclude_groups=clean_cfg.get("exclude_groups"))
        clean_prompts = label_prompts(corpus, sorted(set(clean_items.labels)))
    la_cfg = _get(cfg, "long_audio", {}) or {}
    long_data = None
    if la_cfg.get("enabled", False):
        long_data = make_long_recordings(corpus, split, float(la_cfg.get("duration_s", 20.0)),
                                         int(la_cfg.get("per_label", 2)), la_cfg.get("max_labels", 24), seed=seed)

    # --------------------------------------------------------------- models
    model_args = _get(cfg, "model_args", {}) or {}
    summary: dict[str, Any] = {"models": {}, "meta": {}}
    for name in list(_get(cfg, "models", []) or []):
        entry: dict[str, Any] = {}
        summary["models"][name] = entry
        try:
            kwargs = dict(model_args.get(name) or {})
            kwargs.setdefault("device", device)
            embedder = build_embedder(name, **kwargs)
        except (KeyError, FileNotFoundError, ImportError, OSError, ValueError) as exc:
            logger.warning("skipping %s: %s", name, exc)
            entry["skipped"] = str(exc)
            continue
        entry["info"] = {"cache_key": embedder.cache_key, "dim": embedder.dim, "sample_rate": embedder.sample_rate,
                         "text": embedder.supports_text, "frames": embedder.supports_frames,
                         "speech_only": bool(getattr(embedder, "speech_only", False))}
        trained_on = getattr(embedder, "training_revision", None)
        if trained_on:
            entry["info"]["training_revision"] = trained_on
            if trained_on != revision:
                msg = (f"{name} was trained on corpus revision {trained_on[:12]}, this run uses {revision[:12]}: "
                       f"its training clips may overlap the {split} split (retrain it on this corpus)")
                logger.warning(msg)
                entry.setdefault("warnings", []).append(msg)
        trained_groups = getattr(embedder, "training_groups", None)
        if trained_groups and clean_items is not None:
            overlap = sum(g in trained_groups for g in clean_items.info.get("groups", []))
            entry["info"]["clean_clips_in_training_groups"] = int(overlap)
            if overlap:
                msg = f"{overlap} of the {len(clean_items)} clean {split} clips are from groups {name} was trained on"
                logger.warning(msg)
                entry.setdefault("warnings", []).append(msg)
        if items is not None:
            t0 = time.perf_counter()
            emb = {c: cache.embed(embedder, w, items.sample_rate, desc=f"{name} {c}", progress=progress)
                   for c, w in items.conditions().items()}
            entry["info"]["embed_seconds"] = time.perf_counter() - t0
            text = label_text_embeddings(embedder, labels, prompts) if embedder.supports_text else None
            prepared = prepare_tasks(emb, y, text, tasks, folds=folds, k=k, seed=seed)
            entry["tasks"] = {}
            for task, prep in prepared.items():
                t0 = time.perf_counter()
                evaluation = evaluate(prep, subsets, n_boot=n_boot, seed=seed, alpha=alpha)
                secs = time.perf_counter() - t0
                entry["tasks"][task] = {"main": prep.main, "chance": prep.chance, "info": prep.info,
                                        "evaluation": evaluation}
                write_json(out / "results" / name / f"{TASK_NAMES.get(task, task)}.json",
                           task_result(task, prep.main, evaluation, revision, secs,
                                       {"model_name": name, "model_key": embedder.cache_key, "chance": prep.chance}))
        if clean_items is not None:
            entry["clean"] = evaluate_clean(embedder, clean_items, cache, clean_prompts, folds, k, seed, progress)
        if long_data is not None:
            wavs, llabels, _, lsr = long_data
            entry["long_audio"] = run_segment_study(
                embedder, wavs, llabels, lsr, [float(s) for s in la_cfg.get("segment_s", (2, 5, 10))],
                list(la_cfg.get("aggregations", ("mean", "max", "concat", "attention"))),
                whole=bool(la_cfg.get("whole", True)), folds=folds, seed=seed, progress=progress,
                attention_steps=int(la_cfg.get("attention_steps", 200)))
        del embedder

    summary["meta"] = {
        "command": _get(cfg, "command") or " ".join(sys.argv), "corpus": str(corpus), "split": split,
        "dataset_revision": revision, "separator": _get(cfg, "separator"),
        "separation": items.info.get("separator") if items is not None else None,
        "n_items": len(items) if items is not None else 0, "items_seed": it_cfg.get("seed", 1234),
        "category_counts": {c: int(len(v)) for c, v in subsets.items() if c != "all"},
        "clean_clips": ({"n": len(clean_items), "excluded": clean_items.info.get("excluded", 0),
                         "exclude_groups": clean_cfg.get("exclude_groups")} if clean_items is not None else None),
        "labels": len(labels), "bootstrap": n_boot, "folds": folds, "cache": {"hits": cache.hits, "misses": cache.misses},
        "config": cfg,
    }
    if long_data is not None:
        summary["long_audio_meta"] = {"recordings": len(long_data[0]), "duration_s": la_cfg.get("duration_s", 20.0),
                                      "labels": len(set(long_data[1])), "folds": folds}
    summary["plots"] = [Path(p).name for p in make_plots(out, summary)]
    write_json(out / "summary.json", summary)
    write_report(out, summary)
    logger.info("embedding benchmark written to %s (cache hits %d, misses %d)", out, cache.hits, cache.misses)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Hydra entry point: ``python -m bench.embedding.run [overrides]``."""
    import hydra

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]

    def _run(cfg) -> None:
        run_benchmark(cfg)

    hydra.main(config_path=CONF_DIR, config_name="bench_embedding", version_base="1.3")(_run)()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
