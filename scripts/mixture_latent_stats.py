"""Re-measure a codec release's latent statistics on the signals the separator sees.

``train_codec`` measures the per-channel latent mean/std on crops of single clips, which the
corpus peak-normalises to -1 dBFS. The separator works on mixtures whose sources are
normalised to ``MixConfig.ref_db`` (-20 dBFS RMS) and then spread over ``level_db``: on those
the "normalised" latents had a variance of about 0.24 instead of 1 (measured on valid
mixtures with the codec shipped before this script), so a unit-variance flow prior was four
times louder than the data. This script measures the statistics over train-split mixtures,
their targets and residuals (exactly what ``SeparationModel.training_loss`` encodes) and
rewrites the release in place or to another folder.

    python scripts/mixture_latent_stats.py SRC_CODEC_DIR DST_CODEC_DIR --corpus /work/corpus
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    from separation.codec import DACVAE, compute_latent_stats
    from separation.data.mixing import MixConfig, MixtureDataset

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--corpus", default="/work/corpus")
    p.add_argument("--items", type=int, default=512, help="train-split mixtures (each gives mixture, target, residual)")
    p.add_argument("--segment-s", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    codec = DACVAE.from_pretrained(args.src).eval()
    ds = MixtureDataset(args.corpus, "train", MixConfig(segment_s=args.segment_s, p_video=0.0, video=False),
                        seed=args.seed, length=args.items)
    old_mean, old_std = codec.latent_mean.clone(), codec.latent_std.clone()

    def batches():
        for i in tqdm(range(args.items), desc="mixtures"):
            it = ds[i]
            yield torch.stack([it["mixture"], it["target"], it["residual"]])  # [3, 1, N]

    with torch.no_grad():
        mean, std = compute_latent_stats(codec, batches())
    # variance of the old normalised latents on these signals, per channel, averaged
    ratio = float(((std / old_std) ** 2).mean())
    codec.set_latent_stats(mean, std)
    codec.save_pretrained(args.dst)
    print(f"old normalised latent variance on train mixtures/stems: {ratio:.3f} (1.0 = matched); "
          f"mean shift {float(((mean - old_mean) / old_std).abs().mean()):.3f} std units; wrote {args.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
