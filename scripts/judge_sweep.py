"""Issue 17's bars for several judges on one candidate set (choose on valid).

Scores every judge - given releases, and WiSE-FT interpolations ``(1 - alpha) * base + alpha *
tuned`` (:mod:`judge.soup`) - on the same held-out mixtures and separator outputs as
``python -m judge.evaluate --bars-separators ...`` (the outputs are generated once per candidate
mode and reused), in the seeds mode and, with ``--variants``, the prompt-variant mode. Prints one
line per (judge, mode) and writes the full :func:`judge.evaluate.evaluate_bars` results as JSON.

    python scripts/judge_sweep.py --separator checkpoints/promptsep-v2 --base checkpoints/promptsep-judge-tiny \
        --tuned runs/judge-ftB/release --alphas 0.25,0.5,0.75 --variants --out runs/s29/sweepB.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch


def summary(r: dict) -> dict[str, float | None]:
    """The headline number of every bar of one :func:`judge.evaluate.evaluate_bars` result (None where
    the candidate set has no case for it)."""
    rel = next(iter(r["f_rerank"].values()), {})

    def get(key, field):
        return (r.get(key) or {}).get(field)

    return {"a": get("a_pcc", "pcc"), "b": get("b_srcc_si_sdr", "srcc"), "c": get("c_pairs", "share"),
            "d": get("d_worse_than_mixture", "share"), "e_present": get("e_silent_present", "share"),
            "e_absent": get("e_absent", "share"), "f_gain_db": (rel.get("judge_gain_db") or {}).get("mean"),
            "f_oracle_db": (rel.get("oracle_gain_db") or {}).get("mean"),
            "f_share": (rel.get("oracle_share") or {}).get("share")}


def main(argv: Sequence[str] | None = None) -> int:
    """Score the judges (see the module docstring); returns the exit status."""
    import os

    from judge.evaluate import evaluate_bars
    from judge.model import Judge
    from judge.soup import interpolate_judges
    from separation.separator import Separator

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--separator", required=True, help="separator release whose outputs are the candidates")
    p.add_argument("--judges", default="", help="comma-separated judge releases scored as they are")
    p.add_argument("--base", default=None, help="WiSE-FT: the release fine-tuning started from")
    p.add_argument("--tuned", default=None, help="WiSE-FT: its fine-tuned copy")
    p.add_argument("--alphas", default="", help="WiSE-FT weights of the tuned judge, e.g. 0.25,0.5,0.75")
    p.add_argument("--corpus", default=os.environ.get("PROMPTSEP_CORPUS", "/work/corpus"),
                   help="corpus root (default: $PROMPTSEP_CORPUS, else /work/corpus)")
    p.add_argument("--split", default="valid")
    p.add_argument("--groups", type=int, default=64)
    p.add_argument("--seed", type=int, default=1237, help="mixture seed (judge.evaluate's default --seed 1234 + 3)")
    p.add_argument("--steps", default="1")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--segment-s", type=float, default=2.0)
    p.add_argument("--grade-recipe", type=int, default=3)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--variants", action="store_true", help="also the prompt-variant candidate mode")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON file of every result")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    judges: dict[str, Judge] = {j.strip(): Judge.from_pretrained(j.strip()) for j in args.judges.split(",") if j.strip()}
    alphas = [float(a) for a in args.alphas.split(",") if a.strip()]
    if alphas:
        if not (args.base and args.tuned):
            p.error("--alphas needs --base and --tuned")
        base, tuned = Judge.from_pretrained(args.base), Judge.from_pretrained(args.tuned)
        for a in alphas:
            judges[f"wise-ft {a:g}"] = interpolate_judges(base, tuned, a)
    if not judges:
        p.error("nothing to score: give --judges and/or --base/--tuned/--alphas")
    seps = {Path(args.separator).name: Separator.from_pretrained(args.separator)}
    memo: dict = {}
    results = {}
    for name, judge in judges.items():
        for variants in ([False, True] if args.variants else [False]):
            r = evaluate_bars(judge, seps, args.corpus, args.split, args.groups, seed=args.seed,
                              steps=[int(x) for x in args.steps.split(",")], seeds=list(range(args.seeds)),
                              segment_s=args.segment_s, bootstrap=args.bootstrap, grade_recipe=args.grade_recipe,
                              variants=variants, memo=memo, progress=False)
            mode = "variants" if variants else "seeds"
            results[f"{name} | {mode}"] = r
            print(name, mode, {k: v if v is None else round(v, 3) for k, v in summary(r).items()}, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
