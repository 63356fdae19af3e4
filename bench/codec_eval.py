"""Codec round-trip quality on corpus clips of one split.

``python -m bench.codec_eval --codec checkpoints/promptsep-tiny/codec --corpus /work/corpus --split test``
(``--codec mdct16k``: a codec preset of ``conf/codec`` that needs no training, e.g. the MDCT).

Reports SI-SDR, multi-resolution STFT distance and the energy above 4 kHz relative to the input
(dB) of ``decode(encode(x))`` against ``x`` (mean, median, per category), the ceiling that any
latent-space separator inherits; with ``--oracle-mixtures N`` also the oracle codec + Wiener
refinement SI-SDRi on ``N`` seeded 2-source cross-category mixtures of the split (the true
stems encoded and decoded, then refined as the separator's output is).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence

import torch
from tqdm import tqdm


def evaluate_codec(codec, corpus: str, split: str = "test", max_clips: int | None = None) -> dict:
    """Round-trip metrics of ``codec`` on the clips of ``split`` (each clip whole, mono)."""
    from promptsep.audio import load_audio
    from separation.data.clips import read_manifest
    from separation.metrics import multi_resolution_stft_distance, si_sdr

    rows = read_manifest(corpus, split)[: max_clips or None]
    per_cat: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    codec.eval()
    for row in tqdm(rows, desc=f"codec round trip ({split})"):
        wav, sr = load_audio(f"{corpus}/{row['path']}")
        if sr != codec.sample_rate:
            raise ValueError(f"clip {row['path']} is {sr} Hz, the codec wants {codec.sample_rate} Hz")
        x = wav[:1][None]
        with torch.no_grad():
            y = codec.decode(codec.encode(x), length=x.shape[-1])
        hf = high_band_db(y[0, 0], x[0, 0], codec.sample_rate)
        for cat in (row["category"], "all"):
            per_cat[cat]["si_sdr"].append(float(si_sdr(y[0, 0], x[0, 0])))
            per_cat[cat]["mrstft"].append(float(multi_resolution_stft_distance(y[0, 0], x[0, 0])))
            if hf is not None:
                per_cat[cat]["hf_db"].append(hf)
    return {
        cat: {f"{k}_{agg.__name__}": agg(v) for k, v in m.items() for agg in (statistics.mean, statistics.median)}
        | {"clips": len(m["si_sdr"])}
        for cat, m in per_cat.items()
    }


def high_band_db(y: torch.Tensor, x: torch.Tensor, sample_rate: int, cutoff: float = 4000.0,
                 min_share: float = 1e-4) -> float | None:
    """Energy of ``y [N]`` above ``cutoff`` Hz over that of ``x [N]``, in dB; None when ``x`` has almost
    nothing there (less than ``min_share`` of its energy), where the ratio means nothing."""
    fx = torch.fft.rfft(x.double()).abs().pow(2)
    fy = torch.fft.rfft(y.double()).abs().pow(2)
    f = torch.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate)
    ex, ey = float(fx[f >= cutoff].sum()), float(fy[f >= cutoff].sum())
    if ex <= min_share * float(fx.sum()) or ex <= 0:
        return None
    return 10.0 * math.log10(max(ey, 1e-30) / ex)


def oracle_codec_refinement(codec, corpus: str, split: str, items: int, seed: int = 0) -> dict:
    """SI-SDRi of the oracle codec + Wiener refinement on 2-source cross-category mixtures.

    Returns:
        ``{"items", "si_sdri_mean", "ci95": [lo, hi], "raw_si_sdri_mean"}`` (raw: the decoded true
        target before refinement).
    """
    from separation.data.mixing import MixConfig, MixtureDataset
    from separation.metrics import si_sdr
    from separation.refine import wiener_refine

    cfg = MixConfig(sample_rate=codec.sample_rate, segment_s=4.0, min_sources=2, max_sources=2, absent_prob=0.0,
                    p_text=1.0, p_span=0.0, p_text_span=0.0, p_video=0.0, p_cross_category=1.0)
    ds = MixtureDataset(corpus, split, cfg, seed=seed, length=items)
    gains, raw = [], []
    for i in tqdm(range(items), desc=f"oracle codec + refinement ({split})"):
        it = ds[i]
        mix, tgt, res = it["mixture"][None], it["target"][None], it["residual"][None]
        with torch.no_grad():
            n = mix.shape[-1]
            t_hat = codec.decode(codec.encode(tgt), n)[0, 0]
            r_hat = codec.decode(codec.encode(res), n)[0, 0]
        refined, _ = wiener_refine(mix[0, 0], t_hat, r_hat)
        base = float(si_sdr(mix[0, 0], tgt[0, 0]))
        gains.append(float(si_sdr(refined, tgt[0, 0])) - base)
        raw.append(float(si_sdr(t_hat, tgt[0, 0])) - base)
    from bench.report import bootstrap_ci

    ci = bootstrap_ci(gains)
    return {"items": items, "si_sdri_mean": statistics.mean(gains), "ci95": [ci["lo"], ci["hi"]],
            "raw_si_sdri_mean": statistics.mean(raw)}


def load_codec_arg(spec: str):
    """A codec from a release folder / hub id, or a preset name of ``conf/codec`` that needs no
    training (the MDCT transform)."""
    from pathlib import Path

    from promptsep.release import conf_node
    from separation.codec import build_codec, codec_config_from_dict, load_codec_release

    if not Path(spec).exists() and "/" not in spec:
        cfg = codec_config_from_dict(conf_node("codec", spec), f"codec/{spec}.yaml")
        if getattr(cfg, "kind", None) != "mdct":
            raise SystemExit(f"codec preset {spec!r} is a learned codec: pass a trained release folder")
        return build_codec(cfg)
    return load_codec_release(spec)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.codec_eval", description=__doc__.splitlines()[0])
    p.add_argument("--codec", required=True, help="codec release folder (config.json + model.safetensors)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--oracle-mixtures", type=int, default=0,
                   help="also measure oracle codec + refinement on this many 2-source mixtures")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    codec = load_codec_arg(args.codec)
    res = evaluate_codec(codec, args.corpus, args.split, args.max_clips)
    print("| category | clips | SI-SDR mean (dB) | SI-SDR median (dB) | MR-STFT mean | >4 kHz energy (dB re input) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for cat, m in sorted(res.items()):
        hf = f"{m['hf_db_mean']:+.2f}" if "hf_db_mean" in m else "n/a"
        print(f"| {cat} | {m['clips']} | {m['si_sdr_mean']:.2f} | {m['si_sdr_median']:.2f} | {m['mrstft_mean']:.3f} | {hf} |")
    if args.oracle_mixtures:
        res["oracle_codec_refinement"] = o = oracle_codec_refinement(codec, args.corpus, args.split,
                                                                      args.oracle_mixtures)
        print(f"oracle codec + refinement on {o['items']} 2-source mixtures: SI-SDRi {o['si_sdri_mean']:+.2f} dB "
              f"[{o['ci95'][0]:+.2f}, {o['ci95'][1]:+.2f}] (decoded, unrefined: {o['raw_si_sdri_mean']:+.2f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
