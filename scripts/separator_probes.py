"""Test-time variants of a separator release, paired against its recommended setting (choose on valid).

Draws text-prompted mixtures of 2-3 sources with ``MixtureDataset(corpus, split, ...)`` (the
target present) and as many again with an absent target, separates each at the release's
recommended sampling (``config.json`` ``sampling``: steps, method, Wiener refinement) and with
each variant, and reports, per variant, the paired SI-SDRi difference to the recommended setting
(mean and 95 % bootstrap CI over mixtures), the target level against the reference, the SI-SDR of
the residual against the true interferers, and the absent-target output energy relative to the
mixture (mean and median). Variants:

- ``bias=B``: the Wiener mask is built from ``B`` x the generated target magnitude
  (``B > 1`` moves energy from the residual to the target; 1 is the release's refinement).
- ``guidance=G``: classifier-free guidance on the text prompt (1 = none).
- ``shift=K``: the raw stems averaged over ``K`` time shifts of the input (multiples of
  ``hop / K`` samples, undone after separation), then refined.
- ``two_pass``: the separated target separated again with the same prompt.

    python scripts/separator_probes.py checkpoints/promptsep-v2 --split valid --items 240 --absent 80 \\
        --bias 1.2 1.4 1.7 2.0 --guidance 1.5 2 3 --shifts 2 4 --two-pass --out runs/separator_probes.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def variant_names(args: argparse.Namespace) -> list[str]:
    """The variants the command line asks for, in report order (the recommended setting first)."""
    names = ["recommended"]
    names += [f"bias={b:g}" for b in args.bias]
    names += [f"guidance={g:g}" for g in args.guidance]
    names += [f"shift={k}" for k in args.shifts]
    return names + (["two_pass"] if args.two_pass else [])


def separate_variants(sep, item: dict, names: list[str]) -> dict[str, torch.Tensor]:
    """Every variant's target ``[1, N]`` for one mixture (``item`` as ``MixtureDataset`` returns it).

    Refinement is the release's own (:meth:`Separator.wiener`); the raw stems of each input delay
    are separated once and shared by every ``shift`` variant that uses that delay.
    """
    sr, x, text = sep.sample_rate, item["mixture"].reshape(1, -1), item["text"]
    hop = int(sep.model.codec.hop_length)
    raws: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def raw(delay: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (target, residual) ``[1, N]`` of the input delayed by ``delay`` samples, delay undone."""
        if delay not in raws:
            o = sep.separate(torch.nn.functional.pad(x, (delay, 0)), sr, text=text, keep_raw=True)
            raws[delay] = tuple(r.reshape(1, -1)[:, delay:] for r in o.raw)
        return raws[delay]

    base = sep.separate(x, sr, text=text, keep_raw=True)
    raws[0] = tuple(r.reshape(1, -1) for r in base.raw)
    out: dict[str, torch.Tensor] = {}
    for name in names:
        kind, _, value = name.partition("=")
        if kind == "recommended":
            t = base.target.reshape(1, -1)
        elif kind == "bias":
            raw_t, raw_r = raw(0)
            t = sep.wiener(x, float(value) * raw_t, raw_r)[0]
        elif kind == "guidance":
            t = sep.separate(x, sr, text=text, guidance={"text": float(value)}).target.reshape(1, -1)
        elif kind == "shift":
            k = int(value)
            stems = [raw(j * hop // k) for j in range(k)]
            t = sep.wiener(x, torch.stack([s[0] for s in stems]).mean(0), torch.stack([s[1] for s in stems]).mean(0))[0]
        elif kind == "two_pass":
            t = sep.separate(base.target.reshape(1, -1), sr, text=text).target.reshape(1, -1)
        else:
            raise ValueError(f"unknown variant {name!r}")
        out[name] = t
    return out


def probe(sep, corpus: str, split: str, items: int, absent: int, names: list[str], seed: int = 47) -> list[dict]:
    """Per-mixture metrics of every variant (see the module docstring)."""
    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.metrics import energy_ratio_db, si_sdr

    rows = []
    for is_absent, count, s in ((False, items, seed), (True, absent, seed + 1)):
        if count <= 0:
            continue
        cfg = MixConfig(segment_s=4.0, min_sources=2, max_sources=3, absent_prob=float(is_absent),
                        p_text=1.0, p_span=0.0, p_text_span=0.0, p_video=0.0, sample_rate=sep.sample_rate)
        ds = MixtureDataset(corpus, split, cfg, seed=s, length=count)
        for i in tqdm(range(count), desc="absent" if is_absent else "present"):
            it = ds[i]
            x, ref = it["mixture"].reshape(1, -1).double(), it["target"].reshape(1, -1).double()
            row = {"absent": is_absent, "category": it["category"], "label": it["label"]}
            for name, t in separate_variants(sep, it, names).items():
                t = t.double()
                if not torch.isfinite(t).all():
                    raise FloatingPointError(f"variant {name} gave a non-finite target on item {i}")
                if is_absent:
                    row[name] = {"absent_db": float(energy_ratio_db(t, x))}
                else:
                    row[name] = {"si_sdri": float(si_sdr(t, ref) - si_sdr(x, ref)),
                                 "level_db": float(energy_ratio_db(t, ref)),
                                 "residual_si_sdr": float(si_sdr(x - t, x - ref))}
            rows.append(row)
    return rows


def summarise(rows: list[dict], names: list[str]) -> dict[str, dict]:
    """Per variant: SI-SDRi, its paired difference to ``recommended``, level, residual SI-SDR, absent energy."""
    from bench.report import bootstrap_ci

    present = [r for r in rows if not r["absent"]]
    gone = [r for r in rows if r["absent"]]
    out = {}
    for name in names:
        s = {}
        if present:
            s["si_sdri"] = bootstrap_ci([r[name]["si_sdri"] for r in present])
            s["si_sdri_minus_recommended"] = bootstrap_ci(
                [r[name]["si_sdri"] - r["recommended"]["si_sdri"] for r in present])
            s["level_db"] = bootstrap_ci([r[name]["level_db"] for r in present])
            s["residual_si_sdr"] = bootstrap_ci([r[name]["residual_si_sdr"] for r in present])
            cats = sorted({r["category"] for r in present})
            for key in ("si_sdri", "level_db"):
                s[f"per_category_{key}"] = {c: float(np.mean([r[name][key] for r in present if r["category"] == c]))
                                            for c in cats}
        if gone:
            s["absent_db"] = bootstrap_ci([r[name]["absent_db"] for r in gone])
        out[name] = s
    return out


def table(summary: dict[str, dict]) -> str:
    """A markdown table of :func:`summarise`'s result."""
    def f(c):
        return "-" if not c or c.get("mean") is None else f"{c['mean']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}]"

    def g(c):
        return "-" if not c or c.get("mean") is None else f"{c['mean']:+.1f} / {c['median']:+.1f} dB"
    lines = ["| variant | SI-SDRi | minus recommended | target level | residual SI-SDR | absent: mean / median |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, s in summary.items():
        lines.append(f"| {name} | {f(s.get('si_sdri'))} | {f(s.get('si_sdri_minus_recommended'))} | {f(s.get('level_db'))} | "
                     f"{f(s.get('residual_si_sdr'))} | {g(s.get('absent_db'))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from separation.separator import Separator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("release", help="a separator release folder")
    p.add_argument("--corpus", default="/work/corpus")
    p.add_argument("--split", default="valid", help="choose on valid; test is for the one final read")
    p.add_argument("--items", type=int, default=240, help="target-present mixtures")
    p.add_argument("--absent", type=int, default=80, help="absent-target mixtures")
    p.add_argument("--seed", type=int, default=47)
    p.add_argument("--bias", type=float, nargs="*", default=[])
    p.add_argument("--guidance", type=float, nargs="*", default=[])
    p.add_argument("--shifts", type=int, nargs="*", default=[])
    p.add_argument("--two-pass", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write rows + summary as JSON here")
    args = p.parse_args(argv)
    if any(b <= 0 for b in args.bias) or any(g <= 0 for g in args.guidance) or any(k < 2 for k in args.shifts):
        p.error("--bias and --guidance values must be > 0 and --shifts values >= 2")
    if args.items < 0 or args.absent < 0:
        p.error("--items and --absent must be >= 0")
    if args.items <= 0 and args.absent <= 0:
        p.error("nothing to probe: --items and --absent are both 0")
    torch.set_num_threads(args.threads)
    names = variant_names(args)
    sep = Separator.from_pretrained(args.release)
    rows = probe(sep, args.corpus, args.split, args.items, args.absent, names, args.seed)
    summary = summarise(rows, names)
    print(table(summary))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"release": str(args.release), "split": args.split, "seed": args.seed,
                                              "summary": summary, "rows": rows}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
