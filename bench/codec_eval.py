"""Codec round-trip quality on corpus clips of one split.

``python -m bench.codec_eval --codec checkpoints/promptsep-tiny/codec --corpus /work/corpus --split test``

Reports SI-SDR and multi-resolution STFT distance of ``decode(encode(x))`` against ``x``
(mean, median, per category), the ceiling that any latent-space separator inherits.
"""

from __future__ import annotations

import argparse
import json
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
        for cat in (row["category"], "all"):
            per_cat[cat]["si_sdr"].append(float(si_sdr(y[0, 0], x[0, 0])))
            per_cat[cat]["mrstft"].append(float(multi_resolution_stft_distance(y[0, 0], x[0, 0])))
    return {
        cat: {f"{k}_{agg.__name__}": agg(v) for k, v in m.items() for agg in (statistics.mean, statistics.median)}
        | {"clips": len(m["si_sdr"])}
        for cat, m in per_cat.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.codec_eval", description=__doc__.splitlines()[0])
    p.add_argument("--codec", required=True, help="codec release folder (config.json + model.safetensors)")
    p.add_argument("--corpus", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    from separation.codec import DACVAE

    res = evaluate_codec(DACVAE.from_pretrained(args.codec), args.corpus, args.split, args.max_clips)
    print("| category | clips | SI-SDR mean (dB) | SI-SDR median (dB) | MR-STFT mean |")
    print("| --- | --- | --- | --- | --- |")
    for cat, m in sorted(res.items()):
        print(f"| {cat} | {m['clips']} | {m['si_sdr_mean']:.2f} | {m['si_sdr_median']:.2f} | {m['mrstft_mean']:.3f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
