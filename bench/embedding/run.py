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
from promptsep.release import config_dir

logger = logging.getLogger(__name__)

CONF_DIR = str(config_dir())


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


def _mteb_version() -> str:
    import mteb

    return str(mteb.__version__)


def run_mteb(encoder, tasks: list, out: Path, model_name: str, n_boot: int, seed: int, alpha: float,
             batch_size: int = 16) -> dict[str, Any]:
    """Evaluate ``tasks`` with ``mteb.evaluate`` (TaskResult files under ``out/mteb``) and add the
    bootstrap/fidelity layer from mteb's saved predictions.

    Returns:
        ``{task key: {"main", "task_name", "evaluation": {"all": {...}}}}``.
    """
    import mteb

    from bench.embedding.fidelity import bootstrap

    if not tasks:
        return {}
    pred_dir = out / "mteb_predictions" / model_name.replace("/", "__")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small k-means/probe fits: BLAS threads only add contention
        result = mteb.evaluate(encoder, tasks, cache=mteb.ResultCache(out / "mteb"), overwrite_strategy="always",
                               prediction_folder=pred_dir, co2_tracker=False, show_progress_bar=False,
                               encode_kwargs={"batch_size": batch_size, "show_progress_bar": False})
    by_name = {t.metadata.name: t for t in tasks}
    entry: dict[str, Any] = {}
    for tr in result.task_results:
        task = by_name[tr.task_name]
        evaluation = {}
        for sub in task.info["subsets"]:
            full = {split: next(r for r in rows if r["hf_subset"] == sub) for split, rows in tr.scores.items()}
            main = {split: float(r["main_score"]) for split, r in full.items()}
            ev = bootstrap(task, main, pred_dir, full, n_boot=n_boot, seed=seed, alpha=alpha, subset=sub)
            ev["n"] = int(task.info["subsets"][sub]["n"])
            ev["scores"] = {c: {task.metadata.main_score: v} for c, v in ev["scores"].items()}
            evaluation[sub] = ev
        entry[task.info["task"]] = {"main": task.metadata.main_score, "task_name": tr.task_name,
                                    "mteb_version": tr.mteb_version, "evaluation": evaluation}
    return entry


def run_named_mteb_tasks(task_names: list[str], models: list[str], model_args: Mapping[str, Any], out: Path,
                         device: str = "cpu") -> dict[str, Any]:
    """Real mteb/MAEB tasks by name (e.g. ``ESC50``) for every model, through ``mteb.evaluate``.

    Their data comes from the Hugging Face hub; offline, each failure is recorded with its
    reason (``{"error": ...}``) instead of stopping the benchmark.
    """
    import mteb

    from bench.embedding.models import mteb_model

    try:
        tasks = list(mteb.get_tasks(tasks=task_names))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown mteb task in {task_names}: {exc}") from exc
    res: dict[str, Any] = {}
    for name in models:
        try:
            encoder, _ = mteb_model(name, **{**dict(model_args.get(name) or {}), "device": device})
            result = mteb.evaluate(encoder, tasks, cache=mteb.ResultCache(out / "mteb"), co2_tracker=False,
                                   show_progress_bar=False, raise_error=True)
            res[name] = {tr.task_name: tr.get_score() for tr in result.task_results}
        except Exception as exc:  # noqa: BLE001 - hub access fails in many ways offline
            logger.warning("mteb tasks %s with %s failed: %s", task_names, name, exc)
            res[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return res


def _run_splits(cfg: Mapping[str, Any], splits: list[str]) -> dict[str, Any]:
    """Run the benchmark on each split that exists (``out_dir/<split>/``) and put them side by side."""
    from bench.embedding.report import write_json, write_split_comparison
    from separation.data.clips import read_manifest

    corpus = Path(_get(cfg, "corpus"))
    if not (corpus / "manifest.jsonl").is_file():
        raise FileNotFoundError(f"corpus manifest not found: {corpus / 'manifest.jsonl'}")
    out = Path(_get(cfg, "out_dir", "runs/bench_embedding"))
    present = [s for s in splits if read_manifest(corpus, s)]
    if not present:
        raise ValueError(f"none of the splits {splits} has clips in {corpus}")
    summaries = {}
    for sp in present:
        summaries[sp] = run_benchmark({**cfg, "split": sp, "out_dir": str(out / sp)})
    combined = {"splits": summaries, "missing_splits": [s for s in splits if s not in present]}
    write_json(out / "summary.json", {"splits": list(present), "missing_splits": combined["missing_splits"]})
    write_split_comparison(out, summaries, combined["missing_splits"])
    return combined


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
    from bench.embedding.models import mteb_model
    from bench.embedding.report import make_plots, write_json, write_report
    from bench.embedding.tasks import TASKS, TEXT_TASKS, build_task

    cfg = _plain(cfg)
    splits = _get(cfg, "split", "test")
    if isinstance(splits, (list, tuple)):
        return _run_splits(cfg, [str(s) for s in splits])
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
    folds = int(ev.get("folds", 5))
    n_boot, alpha = int(ev.get("bootstrap", 200)), float(ev.get("alpha", 0.05))
    clustering_boot = int(ev.get("clustering_boot", 10))
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
    prompts = label_prompts(corpus, labels) if items is not None else {}
    task_objs: dict[str, Any] = {}
    if items is not None:
        texts = {lab: prompts[lab][0] for lab in labels}
        shared: dict = {}
        cats = np.asarray(items.categories)
        subsets = {"all": np.arange(len(items))}
        for c in sorted(set(items.categories)):
            if (cats == c).sum() >= min_cat:
                subsets[c] = np.nonzero(cats == c)[0]
        for t in tasks:
            task_objs[t] = build_task(t, items.conditions(), items.sample_rate, items.labels, revision, texts,
                                      folds=folds, clustering_boot=clustering_boot, seed=seed, subsets=subsets,
                                      pairs_per_item=int(ev.get("pairs_per_item", 4)), shared=shared)

    clean_cfg = _get(cfg, "clean_clips", {}) or {}
    clean_items = None
    if clean_cfg.get("enabled", True):
        clean_items = load_clean_clips(corpus, split, float(clean_cfg.get("max_seconds", 10.0)),
                                       clean_cfg.get("max_clips"), seed, exclude_groups=clean_cfg.get("exclude_groups"))
        clean_prompts = label_prompts(corpus, sorted(set(clean_items.labels)))
        clean_texts = {lab: p[0] for lab, p in clean_prompts.items()}
        clean_shared: dict = {}
        clean_tasks = {t: build_task(t, {"reference": clean_items.reference}, clean_items.sample_rate,
                                     clean_items.labels, revision, clean_texts, folds=folds,
                                     clustering_boot=clustering_boot, seed=seed, suffix="Clean", shared=clean_shared)
                       for t in ("classification", "clustering", "zero_shot", "text_to_audio")}
    la_cfg = _get(cfg, "long_audio", {}) or {}
    long_data = None
    if la_cfg.get("enabled", False):
        long_data = make_long_recordings(corpus, split, float(la_cfg.get("duration_s", 20.0)),
                                         int(la_cfg.get("per_label", 2)), la_cfg.get("max_labels", 24), seed=seed,
                                         distractor_fraction=float(la_cfg.get("distractor_fraction", 0.0)),
                                         clip_s=float(la_cfg.get("clip_s", 2.0)))

    # --------------------------------------------------------------- models
    model_args = _get(cfg, "model_args", {}) or {}
    summary: dict[str, Any] = {"models": {}, "meta": {}}
    for name in list(_get(cfg, "models", []) or []):
        entry: dict[str, Any] = {}
        summary["models"][name] = entry
        try:
            kwargs = dict(model_args.get(name) or {})
            kwargs.setdefault("device", device)
            encoder, embedder = mteb_model(name, cache=cache, **kwargs)
        except (KeyError, FileNotFoundError, ImportError, OSError, ValueError) as exc:
            logger.warning("skipping %s: %s", name, exc)
            entry["skipped"] = str(exc)
            continue
        meta = encoder.mteb_model_meta
        has_text = "text" in (meta.modalities or [])
        entry["info"] = {"mteb_name": meta.name, "revision": meta.revision, "dim": meta.embed_dim, "text": has_text}
        if embedder is not None:
            entry["info"].update({"cache_key": embedder.cache_key, "sample_rate": embedder.sample_rate,
                                  "frames": embedder.supports_frames,
                                  "speech_only": bool(getattr(embedder, "speech_only", False))})
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
        run_tasks = [t for k, t in task_objs.items() if has_text or k not in TEXT_TASKS]
        t0 = time.perf_counter()
        entry["tasks"] = run_mteb(encoder, run_tasks, out, meta.name, n_boot, seed, alpha)
        entry["info"]["eval_seconds"] = time.perf_counter() - t0
        if clean_items is not None:
            clean = run_mteb(encoder, [t for k, t in clean_tasks.items() if has_text or k not in TEXT_TASKS], out,
                             meta.name, 0, seed, alpha)
            entry["clean"] = {"n": len(clean_items), "labels": len(set(clean_items.labels)),
                              **{k: {v["main"]: v["evaluation"]["all"]["scores"]["reference"][v["main"]]}
                                 for k, v in clean.items()}}
        if long_data is not None and embedder is not None:
            wavs, llabels, _, lsr = long_data
            entry["long_audio"] = run_segment_study(
                embedder, wavs, llabels, lsr, [float(s) for s in la_cfg.get("segment_s", (2, 5, 10))],
                list(la_cfg.get("aggregations", ("mean", "max", "concat", "attention"))),
                whole=bool(la_cfg.get("whole", True)), folds=folds, seed=seed, progress=progress,
                attention_steps=int(la_cfg.get("attention_steps", 200)))
        del embedder, encoder

    mteb_task_names = list(_get(cfg, "mteb_tasks", []) or [])
    if mteb_task_names:
        summary["mteb_tasks"] = run_named_mteb_tasks(mteb_task_names, list(_get(cfg, "models", []) or []),
                                                     model_args, out, device)
    summary["meta"] = {
        "command": _get(cfg, "command") or " ".join(sys.argv), "corpus": str(corpus), "split": split,
        "dataset_revision": revision, "separator": _get(cfg, "separator"),
        "separation": items.info.get("separator") if items is not None else None,
        "n_items": len(items) if items is not None else 0, "items_seed": it_cfg.get("seed", 1234),
        "category_counts": ({c: items.categories.count(c) for c in sorted(set(items.categories))}
                            if items is not None else {}),
        "clean_clips": ({"n": len(clean_items), "excluded": clean_items.info.get("excluded", 0),
                         "exclude_groups": clean_cfg.get("exclude_groups")} if clean_items is not None else None),
        "labels": len(labels), "bootstrap": n_boot, "folds": folds, "mteb_version": _mteb_version(), "cache": {"hits": cache.hits, "misses": cache.misses},
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
