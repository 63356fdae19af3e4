"""Make a trained linear-path codec encode with its linear analysis alone (``dac_mean=False``).

The shipped ``promptsep-tiny`` codec was trained with the DAC encoder adding to the latent means
(``dac_mean=True``, its contribution starting at zero). Encoding through the DAC encoder costs
~5 s per 72 s of audio on one CPU core, which made separator training (three encodes per example)
10x slower than the DiT itself. This script drops the DAC encoder's (small, trained) contribution
to the means, reports the round-trip quality before and after on valid-split crops, re-measures
the latent statistics on train crops and writes the converted release.

    python scripts/linearize_codec_means.py SRC_DIR DST_DIR --corpus /work/corpus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from separation.codec import DACVAE, build_codec
    from separation.data.clips import ClipCropDataset
    from separation.metrics import multi_resolution_stft_distance, si_sdr
    from separation.train_codec import measure_latent_stats

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--corpus", default="/work/corpus")
    p.add_argument("--items", type=int, default=64, help="valid-split 2 s crops for the before/after check")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    src = DACVAE.from_pretrained(args.src).eval()
    if not src.linear_path:
        raise SystemExit(f"{args.src} has no linear path")
    cfg = src.cfg
    cfg.dac_mean = False
    dst = build_codec(cfg).eval()
    dst.load_state_dict(src.state_dict())
    val_ds = ClipCropDataset(args.corpus, "valid", 2.0, src.sample_rate, 10**9, seed=1)
    val = torch.stack([val_ds[i] for i in range(args.items)])
    report = {}
    with torch.no_grad():
        for name, codec in (("dac_mean", src), ("linear_mean", dst)):
            if name == "linear_mean":
                stats_ds = ClipCropDataset(args.corpus, "train", 2.0, src.sample_rate, 10**9, seed=7)
                mu, std = measure_latent_stats(codec, stats_ds, 32, 8)
                codec.set_latent_stats(mu, std)
            out = codec.decode(codec.encode(val), length=val.shape[-1])[:, 0]
            report[name] = {"si_sdr_median": float(si_sdr(out, val[:, 0]).median()),
                            "mrstft_mean": float(multi_resolution_stft_distance(out, val[:, 0]).mean())}
    dst.save_pretrained(args.dst)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
