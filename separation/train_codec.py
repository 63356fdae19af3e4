"""DAC-VAE codec training with Lightning, configured by Hydra (``conf/train_codec.yaml``).

``python -m separation.train_codec`` trains the codec on random crops of the corpus'
train split, then measures per-channel latent statistics on train crops (so the
separator sees unit-scale latents) and exports a release folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from promptsep.release import config_from_dict
from separation.harness import StepSampler, build_trainer, fit, hydra_entry, resume_checkpoint, resume_step

logger = logging.getLogger(__name__)


def codec_config_from(cfg) -> Any:
    """:class:`~separation.codec.CodecConfig` from the composed config (unknown keys are an error)."""
    from omegaconf import OmegaConf

    from separation.codec import CodecConfig

    return config_from_dict(CodecConfig, OmegaConf.to_container(cfg.codec, resolve=True), "codec")


def loss_config_from(cfg) -> Any:
    """:class:`~separation.codec_losses.CodecLossConfig` from the composed config (unknown keys are an error)."""
    from omegaconf import OmegaConf

    from separation.codec_losses import CodecLossConfig

    return config_from_dict(CodecLossConfig, OmegaConf.to_container(cfg.loss, resolve=True), "loss")


class CodecModule(L.LightningModule):
    """Lightning wrapper of the codec's reconstruction + KL objective (:func:`codec_train_step`)."""

    def __init__(self, codec, cfg):
        super().__init__()
        self.codec = codec
        self.cfg = cfg
        self.loss_cfg = loss_config_from(cfg)

    def training_step(self, wav, batch_idx):
        from separation.codec_losses import codec_train_step

        loss, logs = codec_train_step(self.codec, wav, self.loss_cfg)
        for k, v in logs.items():
            self.log(f"train/{k}", float(v), prog_bar=k in ("loss",), batch_size=wav.shape[0])
        return loss

    def configure_optimizers(self):
        o = self.cfg.optim
        lin = [p for n, p in self.codec.named_parameters() if n.startswith("lin_")]
        rest = [p for n, p in self.codec.named_parameters() if not n.startswith("lin_")]
        groups = [{"params": rest, "lr": o.lr}]
        if lin:  # the PCA-initialised linear path moves slower than the DAC stacks
            groups.append({"params": lin, "lr": o.lr * float(o.get("linear_lr_scale", 0.1))})
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))
        total = max(1, int(self.cfg.max_steps))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.05, 1 - s / total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def measure_latent_stats(codec, dataset, batches: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``[C]`` of the raw (unnormalised) latent means over ``batches`` batches
    of train crops (:func:`separation.codec.compute_latent_stats` over a fixed slice of the data)."""
    from separation.codec import compute_latent_stats

    loader = DataLoader(dataset, batch_size=batch_size, sampler=StepSampler(10**8, batches * batch_size))
    with torch.no_grad():
        return compute_latent_stats(codec, loader)


def train_codec(cfg) -> dict[str, Any]:
    """Train the codec from a composed ``conf/train_codec.yaml``; returns paths and the final loss."""
    from separation.codec import build_codec
    from separation.data.clips import ClipCropDataset

    torch.set_num_threads(int(cfg.trainer.get("threads", 2)))
    L.seed_everything(int(cfg.seed), verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ccfg = codec_config_from(cfg)
    codec = build_codec(ccfg)
    module = CodecModule(codec, cfg)
    ckpt_path = resume_checkpoint(cfg, out_dir)
    start = resume_step(ckpt_path)
    result: dict[str, Any] = {"out_dir": str(out_dir)}
    if codec.linear_path and ckpt_path is None:  # fresh run: PCA of train frames (resume restores it)
        pca_ds = ClipCropDataset(cfg.corpus, "train", 2.0, ccfg.sample_rate, 10**9, seed=int(cfg.seed) + 3)
        crops = torch.stack([pca_ds[i] for i in range(int(cfg.pca_crops))])
        result["pca_energy_kept"] = float(codec.init_linear_path(crops))
        logger.info("linear path: PCA of %d crops keeps %.4f of the frame energy", len(crops),
                    result["pca_energy_kept"])
    ds = ClipCropDataset(cfg.corpus, "train", float(cfg.segment_s), ccfg.sample_rate, 10**9, seed=int(cfg.seed))
    bs = int(cfg.batch_size)
    loader = DataLoader(ds, batch_size=bs, sampler=StepSampler(start * bs, 10**9), num_workers=int(cfg.num_workers),
                        persistent_workers=int(cfg.num_workers) > 0)
    trainer = build_trainer(cfg.trainer, out_dir, int(cfg.max_steps), grad_clip=float(cfg.optim.grad_clip),
                            ckpt_every=int(cfg.trainer.ckpt_every))
    fit(trainer, module, loader, ckpt_path, out_dir)
    result.update(global_step=trainer.global_step,
                  loss={k: float(v) for k, v in trainer.callback_metrics.items()})
    stats_ds = ClipCropDataset(cfg.corpus, "train", 2.0, ccfg.sample_rate, 10**9, seed=int(cfg.seed) + 7)
    mu, std = measure_latent_stats(codec, stats_ds, int(cfg.stats_batches), bs)
    codec.set_latent_stats(mu, std)
    if cfg.get("export_dir"):
        result["export_dir"] = str(codec.save_pretrained(cfg.export_dir))
    return result


def main(argv: list[str] | None = None) -> int:
    """Hydra entry point: ``python -m separation.train_codec [overrides]``."""
    return hydra_entry("train_codec", train_codec, argv)


if __name__ == "__main__":
    raise SystemExit(main())
