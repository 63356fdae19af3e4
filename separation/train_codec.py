"""DAC-VAE codec training with Lightning, configured by Hydra (``conf/train_codec.yaml``).

``python -m separation.train_codec`` trains the codec on random crops of the corpus'
train split, then measures per-channel latent statistics on train crops (so the
separator sees unit-scale latents) and exports a release folder.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from separation.train import CONF_DIR, StepSampler, _atomic_checkpoint_io

logger = logging.getLogger(__name__)


def codec_config_from(cfg) -> Any:
    """:class:`~separation.codec.CodecConfig` from the composed config."""
    from omegaconf import OmegaConf

    from separation.codec import CodecConfig

    d = OmegaConf.to_container(cfg.codec, resolve=True)
    names = {f.name for f in dataclasses.fields(CodecConfig)}
    return CodecConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def loss_config_from(cfg) -> Any:
    """:class:`~separation.codec_losses.CodecLossConfig` from the composed config."""
    from omegaconf import OmegaConf

    from separation.codec_losses import CodecLossConfig

    d = OmegaConf.to_container(cfg.loss, resolve=True)
    names = {f.name for f in dataclasses.fields(CodecLossConfig)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown codec loss options {sorted(unknown)}; known: {sorted(names)}")
    return CodecLossConfig(**d)


def _module_class():
    import lightning as L

    from separation.codec_losses import codec_train_step

    class CodecModule(L.LightningModule):
        def __init__(self, codec, cfg):
            super().__init__()
            self.codec = codec
            self.cfg = cfg
            self.loss_cfg = loss_config_from(cfg)

        def training_step(self, wav, batch_idx):
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

    return CodecModule


@torch.no_grad()
def measure_latent_stats(codec, dataset, batches: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std ``[C]`` of the raw (unnormalised) latent means over train crops."""
    codec.eval()
    loader = DataLoader(dataset, batch_size=batch_size, sampler=StepSampler(10**8, batches * batch_size))
    sums = sq = None
    count = 0
    for wav in loader:
        mean, _ = codec.encode_dist(wav)
        m = mean.transpose(0, 1).reshape(mean.shape[1], -1)
        sums = m.sum(1) if sums is None else sums + m.sum(1)
        sq = m.pow(2).sum(1) if sq is None else sq + m.pow(2).sum(1)
        count += m.shape[1]
    mu = sums / count
    std = (sq / count - mu.pow(2)).clamp_min(1e-8).sqrt()
    return mu, std


def train_codec(cfg) -> dict[str, Any]:
    """Train the codec from a composed ``conf/train_codec.yaml``; returns paths and the final loss."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from separation.codec import build_codec
    from separation.data.clips import ClipCropDataset

    torch.set_num_threads(int(cfg.trainer.get("threads", 2)))
    L.seed_everything(int(cfg.seed), verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ccfg = codec_config_from(cfg)
    codec = build_codec(ccfg)
    module = _module_class()(codec, cfg)
    last = out_dir / "last.ckpt"
    ckpt_path = (str(last) if last.is_file() else None) if cfg.get("resume") == "auto" else cfg.get("resume")
    start = int(torch.load(ckpt_path, map_location="cpu", weights_only=False)["global_step"]) if ckpt_path else 0
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
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, precision=cfg.trainer.precision,
        max_steps=int(cfg.max_steps), max_time=cfg.trainer.get("max_time"), log_every_n_steps=int(cfg.trainer.log_every),
        gradient_clip_val=float(cfg.optim.grad_clip), enable_model_summary=False, limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=str(out_dir), save_last=True, save_top_k=0,
                                   every_n_train_steps=int(cfg.trainer.ckpt_every)), TQDMProgressBar(refresh_rate=10)],
        logger=TensorBoardLogger(str(out_dir), name="tb"), plugins=[_atomic_checkpoint_io()],
        use_distributed_sampler=False,
    )
    trainer.fit(module, train_dataloaders=loader, ckpt_path=ckpt_path)
    trainer.save_checkpoint(str(last))
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
    import sys

    import hydra

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]

    def _run(cfg) -> None:
        print(train_codec(cfg))

    hydra.main(config_path=CONF_DIR, config_name="train_codec", version_base="1.3")(_run)()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
