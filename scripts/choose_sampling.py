"""Pick a separator release's recommended sampler settings on the valid split and store them.

For each candidate ``(steps, method)`` the release separates the same valid-split mixtures
(:class:`separation.data.mixing.MixtureDataset`, fixed seed) and the mean SI-SDR improvement of
the default output (Wiener-refined, with each mask exponent and STFT size of ``REFINE_GRID``)
is measured; the cheapest setting (fewest model evaluations) within ``--tolerance-db`` (0.05 dB)
of the best is written to the release's
``config.json`` as ``config.sampling`` (what ``Separator.separate`` uses when no ``steps`` /
``method`` are given). The table of every candidate is printed and saved beside it as
``sampling_choice.json``. The test split is never read.

    python scripts/choose_sampling.py checkpoints/promptsep-tiny --corpus /work/corpus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CANDIDATES = [(1, "euler"), (2, "euler"), (4, "euler"), (4, "midpoint"), (8, "midpoint"), (16, "midpoint")]
#: Wiener refinement settings tried with every sampler: (mask exponent, STFT size).
REFINE_GRID = [(p, n) for p in (0.75, 1.0, 1.5, 2.0) for n in (1024, 2048)]


def pick(rows: list[dict], tolerance_db: float) -> dict:
    """The cheapest candidate (fewest model evaluations, then the higher score) whose
    ``si_sdri_wiener`` is within ``tolerance_db`` of the best one's. ``steps`` is the number of
    model evaluations for every method (:func:`separation.flow.midpoint` takes ``steps // 2`` steps).

    Raises:
        ValueError: a negative tolerance or no candidates.
    """
    if tolerance_db < 0 or not rows:
        raise ValueError(f"need candidates and a tolerance >= 0 dB, got {len(rows)} rows, {tolerance_db}")
    top = max(r["si_sdri_wiener"] for r in rows)
    return min((r for r in rows if r["si_sdri_wiener"] >= top - tolerance_db),
               key=lambda r: (r["steps"], -r["si_sdri_wiener"]))


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.metrics import si_sdr
    from separation.refine import wiener_refine
    from separation.separator import Separator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("release")
    p.add_argument("--corpus", default="/work/corpus")
    p.add_argument("--items", type=int, default=64)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tolerance-db", type=float, default=0.05,
                   help="take the cheapest sampler (fewest model evaluations) within this many dB of the best")
    p.add_argument("--dry-run", action="store_true", help="print the table, do not write the release")
    args = p.parse_args(argv)
    if args.tolerance_db < 0:
        p.error("--tolerance-db must be >= 0")

    torch.set_num_threads(args.threads)
    sep = Separator.from_pretrained(args.release)
    ds = MixtureDataset(args.corpus, "valid", MixConfig(segment_s=4.0, min_sources=2, max_sources=3, absent_prob=0.0,
                                                        p_video=0.0), seed=args.seed, length=args.items)
    items = [ds[i] for i in range(args.items)]
    sr = sep.sample_rate
    rows = []
    for steps, method in CANDIDATES:
        outs = []
        for it in tqdm(items, desc=f"{method} x{steps}"):
            out = sep.separate(it["mixture"], sr, text=it["text"] if it["use_text"] else None,
                               spans=it["spans"] if it["use_span"] else None, steps=steps, method=method,
                               refine="none")
            outs.append((out.target, out.residual))
        base = [float(si_sdr(it["mixture"], it["target"]).mean()) for it in items]
        raw = [float(si_sdr(t, it["target"]).mean()) - b for (t, _), it, b in zip(outs, items, base)]
        # The Wiener refinement's mask exponent and STFT size are chosen jointly with the sampler,
        # on the same stems (refining is cheap next to generating).
        for power, n_fft in REFINE_GRID:
            ref_w = []
            for (t, r), it, b in zip(outs, items, base):
                w, _ = wiener_refine(it["mixture"], t, r, n_fft=n_fft, hop_length=n_fft // 4, power=power)
                ref_w.append(float(si_sdr(w, it["target"]).mean()) - b)
            rows.append({"steps": steps, "method": method, "refine_power": power, "refine_n_fft": n_fft,
                         "si_sdri_wiener": sum(ref_w) / len(ref_w), "si_sdri_raw": sum(raw) / len(raw),
                         "items": len(items)})
            print(json.dumps(rows[-1]))
    best = pick(rows, args.tolerance_db)
    top = max(r["si_sdri_wiener"] for r in rows)
    print(f"chosen on valid (cheapest within {args.tolerance_db:g} dB of the best, {top:.2f}): "
          f"{best['method']} x{best['steps']}, Wiener power {best['refine_power']:g} "
          f"n_fft {best['refine_n_fft']} ({best['si_sdri_wiener']:.2f} dB SI-SDRi)")
    if not args.dry_run:
        path = Path(args.release) / "config.json"
        meta = json.loads(path.read_text())
        meta["config"]["sampling"] = {k: best[k] for k in ("steps", "method", "refine_power", "refine_n_fft")}
        path.write_text(json.dumps(meta, indent=2))
        (Path(args.release) / "sampling_choice.json").write_text(json.dumps(
            {"split": "valid", "seed": args.seed, "tolerance_db": args.tolerance_db, "candidates": rows,
             "chosen": best}, indent=2))
        print(f"wrote config.sampling to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
