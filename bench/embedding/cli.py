"""``promptsep bench embedding``: command line of the embedding-fidelity benchmark.

Usage::

    promptsep bench embedding [--separator DIR|oracle:LEAK|none] [--models a,b,...] [--out DIR]
                              [--corpus DIR] [--split test[,test_in]] [--mteb-tasks ESC50,...]
                              [--items N] [--steps N] [--refine wiener|none] [--bootstrap N] [--device D]
                              [--no-long-audio] [--no-clean] [--no-cache] [hydra.key=value ...]
    promptsep bench embedding train [hydra overrides]   # train clap-tiny (conf/embedding/train_clap.yaml)
    promptsep bench embedding check MODEL [...]         # self-check registered models
    promptsep bench embedding list                      # registered models

Flags map onto ``conf/bench_embedding.yaml``; any ``key=value`` argument is passed on as a
Hydra override (e.g. ``items.mix.max_sources=2``). Exit status 2 on a user error.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from bench.embedding.run import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="bench_embedding", overrides=overrides)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptsep bench embedding",
                                description="Do downstream audio embeddings survive separation? (MAEB-style tasks "
                                            "on clean, separated and mixture stems)")
    p.add_argument("--separator", help="Separator release folder, oracle:LEAK, or 'none' (default: the config's)")
    p.add_argument("--models", help="comma-separated built-in names or mteb model names such as "
                                    "laion/clap-htsat-unfused (hub weights) (default: the offline built-ins)")
    p.add_argument("--out", help="output folder (results/, summary.json, report.md, plots)")
    p.add_argument("--corpus", help="corpus folder (manifest.jsonl)")
    p.add_argument("--split", help="corpus split, or several comma-separated (e.g. test,test_in: side by side)")
    p.add_argument("--mteb-tasks", help="comma-separated mteb/MAEB task names to run too (need the hub, e.g. ESC50)")
    p.add_argument("--items", type=int, help="number of test mixtures")
    p.add_argument("--steps", type=int, help="separator ODE steps")
    p.add_argument("--refine", choices=["wiener", "none"], help="Separator refine mode (default: the config's, wiener)")
    p.add_argument("--bootstrap", type=int, help="bootstrap resamples (0: no CIs)")
    p.add_argument("--device", help="torch device for separator and models")
    p.add_argument("--cache-dir", help="embedding/separation cache folder")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--no-long-audio", action="store_true", help="skip the segment x aggregation study")
    p.add_argument("--no-clean", action="store_true", help="skip the clean-clip zero-shot/retrieval scores")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="Hydra overrides key=value")
    return p


def to_overrides(args: argparse.Namespace) -> list[str]:
    """Hydra overrides for parsed flags."""
    ov: list[str] = []
    if args.separator is not None:
        sep = args.separator
        ov.append("separator=null" if sep.lower() in ("none", "null", "") else f"separator='{sep}'")
    if args.models:
        names = [m.strip() for m in args.models.split(",") if m.strip()]
        ov.append("models=[" + ",".join(names) + "]")
    if args.out:
        ov.append(f"out_dir='{args.out}'")
    if args.corpus:
        ov.append(f"corpus='{args.corpus}'")
    if args.split:
        parts = [x.strip() for x in args.split.split(",") if x.strip()]
        ov.append(f"split={parts[0]}" if len(parts) == 1 else "split=[" + ",".join(parts) + "]")
    if args.mteb_tasks:
        ov.append("mteb_tasks=[" + ",".join(x.strip() for x in args.mteb_tasks.split(",") if x.strip()) + "]")
    if args.items is not None:
        ov.append(f"items.n={args.items}")
    if args.steps is not None:
        ov.append(f"separation.steps={args.steps}")
    if args.refine:
        ov.append(f"separation.refine={args.refine}")
    if args.bootstrap is not None:
        ov.append(f"eval.bootstrap={args.bootstrap}")
    if args.device:
        ov.append(f"device={args.device}")
    if args.no_cache:
        ov.append("cache_dir=null")
    elif args.cache_dir:
        ov.append(f"cache_dir='{args.cache_dir}'")
    if args.no_long_audio:
        ov.append("long_audio.enabled=false")
    if args.no_clean:
        ov.append("clean_clips.enabled=false")
    if args.quiet:
        ov.append("progress=false")
    return ov + list(args.overrides)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point called by the ``promptsep bench`` dispatcher with the arguments after ``embedding``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from bench.embedding.train import main as train_main

        return train_main(argv[1:])
    if argv and argv[0] == "list":
        from bench.embedding.models import DEFAULT_MODELS, EMBEDDERS

        for name, factory in EMBEDDERS.items():
            print(f"{name:14s} {'(default) ' if name in DEFAULT_MODELS else ''}{(factory.__doc__ or '').splitlines()[0]}")
        print("any mteb audio model by name also works, e.g. laion/clap-htsat-unfused (its weights come from the hub); "
              "python -c 'import mteb; print([m.name for m in mteb.get_model_metas(modalities=[\"audio\"])])' lists them")
        return 0
    if argv and argv[0] == "check":
        from bench.embedding.models import build_embedder, self_check

        rc = 0
        for name in argv[1:] or ["logmel-stats"]:
            try:
                print(json.dumps(self_check(build_embedder(name))))
            except (KeyError, FileNotFoundError, ImportError, OSError, AssertionError) as exc:
                print(f"{name}: FAILED: {exc}", file=sys.stderr)
                rc = 2
        return rc

    args = build_parser().parse_args(argv)
    overrides = to_overrides(args)
    from hydra.errors import HydraException
    from omegaconf import open_dict

    from bench.embedding.run import run_benchmark

    try:
        cfg = _compose(overrides)
        with open_dict(cfg):
            cfg.command = "promptsep bench embedding " + " ".join(shlex.quote(a) for a in argv)
        summary = run_benchmark(cfg)
    except HydraException as exc:
        print(f"promptsep bench embedding: bad override: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"promptsep bench embedding: error: {exc}", file=sys.stderr)
        return 2
    out = cfg.out_dir
    per_split = summary.get("splits") or {str(cfg.split): summary}
    print(json.dumps({"out_dir": str(out), "report": f"{out}/report.md", "mteb_results": "mteb/results/ (per split folder)",
                      "models": {sp: {n: ("skipped: " + m["skipped"]) if m.get("skipped") else "ok"
                                      for n, m in s["models"].items()} for sp, s in per_split.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main())
