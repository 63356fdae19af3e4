"""Linear-probe accuracy of an encoder's token poolings on clean corpus clips (choose on valid).

The released ``clap-tiny`` embedding is built on the audio tower's CLS output; ``mosaic-tiny``'s is
what its config's ``embedding`` says (``cls`` or ``stages``).
This script probes, on the same clips and with the same 5-fold standardised logistic regression
as the embedding benchmark (:func:`bench.embedding.long_audio.probe_accuracy`), what the tower
gives with other poolings of its outputs: the CLS (unit norm, and raw), the mean and the max
of the last layer's tokens over valid frames, CLS + mean, the mean and max of the convolutional
stem's tokens alone, and ``stages`` (:func:`embeddings.mosaic.stage_pooling`: every stage's mean
and max, what a release with ``embedding: stages`` returns), and ``stages+std`` / ``stem+std`` (the same
with each stage's standard deviation over valid frames as a third part). The log-mel statistics baseline on the same
clips is the benchmark's own (``promptsep bench clap --logmel``).

    python scripts/mosaic_pooling.py checkpoints/promptsep-mosaic-tiny --split valid
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POOLINGS = ("cls_unit", "cls", "mean", "max", "cls+mean", "stem", "stages", "stages+std", "stem+std")


def pooled_features(tower, mel: torch.Tensor, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every pooling of :data:`POOLINGS` for one batch.

    Args:
        tower: an :class:`embeddings.clap.AudioTower`.
        mel: standardised log-mel ``[B, M, F]`` (padding 0).
        frames: valid frames per clip ``[B]``.

    Returns:
        ``{pooling: [B, D]}``.
    """
    from embeddings.mosaic import stage_pooling

    stem, layers, valid = tower.hidden_states(mel, frames)
    cls, tok = layers[-1][:, 0], layers[-1][:, 1:]
    v = valid[..., None].to(tok.dtype)
    mean = (tok * v).sum(1) / v.sum(1).clamp(min=1.0)
    mx = tok.masked_fill(~valid[..., None], float("-inf")).max(1).values
    return {"cls_unit": torch.nn.functional.normalize(cls, dim=-1), "cls": cls, "mean": mean, "max": mx,
            "cls+mean": torch.cat([cls, mean], -1), "stem": stage_pooling([stem], valid),
            "stages": stage_pooling([stem] + [h[:, 1:] for h in layers], valid),
            "stages+std": stage_pooling([stem] + [h[:, 1:] for h in layers], valid, ("mean", "max", "std")),
            "stem+std": stage_pooling([stem], valid, ("mean", "max", "std"))}


def main(argv: list[str] | None = None) -> int:
    from bench.embedding.long_audio import probe_accuracy
    from bench.embedding.train import MelBank, bank_batches
    from promptsep import release

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("release", help="a mosaic-tiny or clap-tiny release folder")
    p.add_argument("--corpus", default="/work/corpus")
    p.add_argument("--split", default="valid")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg_path = Path(args.release) / "config.json"
    kind = json.loads(cfg_path.read_text()).get("kind") if cfg_path.is_file() else None
    if kind == "promptsep_mosaic":
        from embeddings.mosaic import MosaicTiny as cls
    elif kind == "promptsep_clap":
        from embeddings.clap import ClapTiny as cls
    else:
        p.error(f"{args.release} is not a mosaic-tiny or clap-tiny release (kind {kind!r})")
    model = cls.from_pretrained(args.release).eval()
    bank = MelBank(args.corpus, args.split, model.cfg.audio.mel, 10.0, args.max_clips, 0, False)
    labels = sorted(set(bank.labels))
    y = np.array([labels.index(lab) for lab in bank.labels])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in POOLINGS}
    order = []
    with torch.no_grad():
        for b in bank_batches(bank, 32):
            for k, v in pooled_features(model.audio_tower, b["mel"], b["frames"]).items():
                parts[k].append(v.numpy())
            order.append(b["idx"].numpy())
    idx = np.concatenate(order)
    out = {"release": str(args.release), "split": args.split, "clips": int(len(y)), "labels": len(labels),
           "release_sha256": release.sha256_file(Path(args.release) / "model.safetensors")}
    for k in POOLINGS:
        x = np.zeros((len(y), parts[k][0].shape[1]), dtype=np.float64)
        x[idx] = np.concatenate(parts[k])
        out[k] = probe_accuracy(x, y, 5, 0)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
