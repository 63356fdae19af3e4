"""Turn a trained codec release into the codec the separator uses (docs/TRAINING.md, step 2).

Two steps, in one pass from ``SRC_DIR`` to ``DST_DIR`` (formerly ``linearize_codec_means.py``
followed by ``mixture_latent_stats.py``; the result is the same):

1. **Linear means** (only for a linear-path release with ``dac_mean=True``). The shipped ``promptsep-tiny``
   codec was trained with the DAC encoder adding to the latent means (its contribution starting
   at zero). Encoding through the DAC encoder costs ~5 s per 72 s of audio on one CPU core,
   which made separator training (three encodes per example) 10x slower than the DiT itself.
   This step drops the DAC encoder's (small, trained) contribution to the means, reports the
   round-trip quality before and after on valid-split crops and re-measures the latent
   statistics on train crops (as ``train_codec`` does).
2. **Mixture statistics.** ``train_codec`` measures the per-channel latent mean/std on crops of
   single clips, which the corpus peak-normalises to -1 dBFS. The separator works on mixtures
   whose sources are normalised to ``MixConfig.ref_db`` (-20 dBFS RMS) and then spread over
   ``level_db``: on those the "normalised" latents had a variance of about 0.24 instead of 1
   (measured on valid mixtures with the codec shipped before this step), so a unit-variance flow
   prior was four times louder than the data. This step measures the statistics over
   train-split mixtures, their targets and residuals (exactly what
   ``SeparationModel.training_loss`` encodes) and stores them in the release.

    python scripts/separator_codec.py SRC_CODEC_DIR DST_CODEC_DIR --corpus /work/corpus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def linear_means(src, corpus: str, check_items: int) -> tuple[object, dict[str, dict[str, float]]]:
    """Step 1: a copy of codec ``src`` whose latent means are its linear analysis alone.

    Returns:
        ``(codec, report)``: the converted codec (latent statistics re-measured on 32 x 8 train
        crops of 2 s) and the round-trip SI-SDR median / MR-STFT mean of both codecs on
        ``check_items`` valid-split 2 s crops.
    """
    from separation.codec import build_codec
    from separation.data.clips import ClipCropDataset
    from separation.metrics import multi_resolution_stft_distance, si_sdr
    from separation.train_codec import measure_latent_stats

    if not src.linear_path:
        raise SystemExit("the codec has no linear path")
    cfg = src.cfg
    cfg.dac_mean = False
    dst = build_codec(cfg).eval()
    dst.load_state_dict(src.state_dict())
    val_ds = ClipCropDataset(corpus, "valid", 2.0, src.sample_rate, 10**9, seed=1)
    val = torch.stack([val_ds[i] for i in range(check_items)])
    report = {}
    with torch.no_grad():
        for name, codec in (("dac_mean", src), ("linear_mean", dst)):
            if name == "linear_mean":
                stats_ds = ClipCropDataset(corpus, "train", 2.0, src.sample_rate, 10**9, seed=7)
                codec.set_latent_stats(*measure_latent_stats(codec, stats_ds, 32, 8))
            out = codec.decode(codec.encode(val), length=val.shape[-1])[:, 0]
            report[name] = {"si_sdr_median": float(si_sdr(out, val[:, 0]).median()),
                            "mrstft_mean": float(multi_resolution_stft_distance(out, val[:, 0]).mean())}
    return dst, report


def mixture_stats(codec, corpus: str, items: int, segment_s: float, seed: int) -> dict[str, float]:
    """Step 2: set ``codec``'s latent statistics to those of train mixtures, targets and residuals.

    Returns:
        ``{"old_variance", "mean_shift"}``: the variance of the previously normalised latents on
        these signals (1.0 = matched) and the mean shift in units of the old std.
    """
    from tqdm import tqdm

    from separation.codec import compute_latent_stats
    from separation.data.mixing import MixConfig, MixtureDataset

    ds = MixtureDataset(corpus, "train", MixConfig(segment_s=segment_s, p_video=0.0, video=False),
                        seed=seed, length=items)
    old_mean, old_std = codec.latent_mean.clone(), codec.latent_std.clone()

    def batches():
        for i in tqdm(range(items), desc="mixtures"):
            it = ds[i]
            yield torch.stack([it["mixture"], it["target"], it["residual"]])  # [3, 1, N]

    with torch.no_grad():
        mean, std = compute_latent_stats(codec, batches())
    codec.set_latent_stats(mean, std)
    return {"old_variance": float(((std / old_std) ** 2).mean()),
            "mean_shift": float(((mean - old_mean) / old_std).abs().mean())}


def main(argv: list[str] | None = None) -> int:
    from separation.codec import DACVAE

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="trained codec release folder (train_codec's export)")
    p.add_argument("dst", help="where to write the separator's codec release")
    p.add_argument("--corpus", default="/work/corpus")
    p.add_argument("--check-items", type=int, default=64,
                   help="valid-split 2 s crops for the before/after check of step 1")
    p.add_argument("--items", type=int, default=512, help="train-split mixtures (each gives mixture, target, residual)")
    p.add_argument("--segment-s", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    codec = DACVAE.from_pretrained(args.src).eval()
    report = {}
    if codec.linear_path and codec.dac_mean:
        codec, report["round_trip"] = linear_means(codec, args.corpus, args.check_items)
    report["mixture_stats"] = mixture_stats(codec, args.corpus, args.items, args.segment_s, args.seed)
    codec.save_pretrained(args.dst)
    print(json.dumps(report, indent=2))
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
