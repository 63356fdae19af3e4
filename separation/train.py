"""Separator training with Lightning, configured by Hydra (``conf/train.yaml``).

``python -m separation.train experiment=tiny_cpu`` trains; ``train(cfg)`` is the plain
function behind it (the tests call it directly). Resume checkpoints (one file with
model, EMA, optimizer, scheduler, step; written atomically) go to ``out_dir``; a rerun
with ``resume=auto`` continues exactly where the last checkpoint left off: the data
order is a function of the global step and every random draw of a step comes from a
generator seeded by ``(seed, step)``.

Multi-GPU and multi-node runs go through Lightning (``trainer=ddp``): launch with
``torchrun --nproc_per_node=8 -m separation.train trainer=ddp ...`` or under SLURM with
``srun python -m separation.train trainer=ddp trainer.num_nodes=N``; sweeps use Hydra's
submitit launcher (``hydra/launcher=submitit_slurm``, from hydra-submitit-launcher).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

logger = logging.getLogger(__name__)

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


# ------------------------------------------------------------------- configs
def model_config_from(cfg) -> Any:
    """Build a :class:`~separation.model.SeparationModelConfig` from the composed Hydra config."""
    from omegaconf import OmegaConf

    from prompts.text import TextEncoderConfig
    from prompts.video import VideoEncoderConfig
    from separation.codec import CodecConfig
    from separation.dit import DiTConfig
    from separation.flow import FlowConfig
    from separation.model import SeparationModelConfig

    def make(kls, node):
        d = OmegaConf.to_container(node, resolve=True) if node is not None else {}
        names = {f.name for f in dataclasses.fields(kls)}
        return kls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})

    video = cfg.model.get("video")
    return SeparationModelConfig(
        codec=make(CodecConfig, cfg.codec),
        dit=make(DiTConfig, cfg.model.dit),
        flow=make(FlowConfig, cfg.flow),
        text=make(TextEncoderConfig, cfg.model.text),
        video=make(VideoEncoderConfig, video) if video is not None else None,
    )


def mix_config_from(cfg, split: str) -> Any:
    """Build the :class:`~separation.data.mixing.MixConfig` of the data config."""
    from omegaconf import OmegaConf

    from separation.data.mixing import MixConfig

    d = OmegaConf.to_container(cfg.data, resolve=True)
    names = {f.name for f in dataclasses.fields(MixConfig)}
    kinds = d.pop("prompt_kinds", None) or {}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    for kind, p in kinds.items():
        key = "p_" + kind.replace("+", "_")
        if key in names:
            kw[key] = p
    if "video" in names:
        kw["video"] = cfg.model.get("video") is not None and kinds.get("video", 0) > 0
    if "sample_rate" in names:
        kw["sample_rate"] = int(cfg.codec.sample_rate)
    return MixConfig(**kw)


# --------------------------------------------------------------------- data
class StepSampler(Sampler[int]):
    """Yields global item indices ``start, start + 1, ...``: the data order is a function of the step."""

    def __init__(self, start: int = 0, length: int = 10**9):
        self.start = start
        self.length = length

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.start + self.length))

    def __len__(self) -> int:
        return self.length


# ---------------------------------------------------------------- lightning
def _lightning_module_class():
    import lightning as L

    from separation.metrics import si_sdr

    class SeparationModule(L.LightningModule):
        """Lightning wrapper: flow-matching loss, EMA of the trainable weights, validation SI-SDRi."""

        def __init__(self, model, cfg):
            super().__init__()
            self.model = model
            self.cfg = cfg
            self.ema = copy.deepcopy(model.dit).requires_grad_(False)
            self.ema_null_text = model.null_text.detach().clone()
            self.ema_null_video = model.null_video.detach().clone()
            self.val_batches: list | None = None

        # EMA of the backbone and the null embeddings (the frozen parts need none).
        @torch.no_grad()
        def _update_ema(self):
            d = float(self.cfg.optim.ema_decay)
            step = self.global_step
            d = min(d, (1 + step) / (10 + step))
            for pe, pm in zip(self.ema.parameters(), self.model.dit.parameters()):
                pe.lerp_(pm.detach(), 1 - d)
            self.ema_null_text.lerp_(self.model.null_text.detach().to(self.ema_null_text.device), 1 - d)
            self.ema_null_video.lerp_(self.model.null_video.detach().to(self.ema_null_video.device), 1 - d)

        def training_step(self, batch, batch_idx):
            gen = torch.Generator(device="cpu").manual_seed(int(self.cfg.seed) * 1_000_003 + self.global_step)
            out = self.model.training_loss(batch, generator=gen)
            self.log("train/loss", out["loss"], prog_bar=True, batch_size=batch["mixture"].shape[0])
            return out["loss"]

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self._update_ema()

        def configure_optimizers(self):
            o = self.cfg.optim
            params = [p for p in self.model.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
            total = max(1, int(self.cfg.trainer.max_steps))
            warm = max(1, int(o.warmup_steps))

            def lr_lambda(step):
                if step < warm:
                    return (step + 1) / warm
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm)))) * 0.95 + 0.05

            sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def on_save_checkpoint(self, checkpoint):
            checkpoint["ema_dit"] = self.ema.state_dict()
            checkpoint["ema_null_text"] = self.ema_null_text
            checkpoint["ema_null_video"] = self.ema_null_video
            checkpoint["rng_torch"] = torch.get_rng_state()

        def on_load_checkpoint(self, checkpoint):
            self.ema.load_state_dict(checkpoint["ema_dit"])
            self.ema_null_text = checkpoint["ema_null_text"]
            self.ema_null_video = checkpoint["ema_null_video"]
            if "rng_torch" in checkpoint:
                torch.set_rng_state(checkpoint["rng_torch"])

        def ema_model(self):
            """A copy of the model carrying the EMA weights (for export and validation)."""
            m = copy.deepcopy(self.model)
            m.dit.load_state_dict(self.ema.state_dict())
            m.null_text.data.copy_(self.ema_null_text)
            m.null_video.data.copy_(self.ema_null_video)
            return m.eval()

        def validation_step(self, batch, batch_idx):
            return None

        def on_validation_epoch_end(self):
            if self.val_batches is None or self.trainer.sanity_checking:
                return
            metrics = evaluate_si_sdri(self.ema_model(), self.val_batches, nfe=int(self.cfg.val.nfe),
                                       method=str(self.cfg.val.get("method", "midpoint")))
            for k, v in metrics.items():
                self.log(f"val/{k}", v, prog_bar=k == "si_sdri")

    SeparationModule.si_sdr = staticmethod(si_sdr)
    return SeparationModule


@torch.no_grad()
def evaluate_si_sdri(model, batches, nfe: int = 8, seed: int = 0, method: str = "midpoint") -> dict[str, float]:
    """Mean SI-SDR of the generated target and its improvement over the mixture, on present targets.

    Args:
        model: a :class:`~separation.model.SeparationModel` (EMA weights) in eval mode.
        batches: collated batches from :class:`~separation.data.mixing.MixtureDataset`.
        nfe: sampler function evaluations.
        seed: noise seed.
        method: ODE sampler (``midpoint``, ``euler``, ...).

    Returns:
        ``{"si_sdr": ..., "si_sdri": ..., "si_sdri_wiener": ..., "absent_energy_db": ...}`` (means
        over items; ``si_sdri_wiener`` after :func:`~separation.refine.wiener_refine`).
    """
    from separation.metrics import energy_ratio_db, si_sdr
    from separation.refine import wiener_refine

    sdrs, imps, imps_w, absent = [], [], [], []
    gen = torch.Generator().manual_seed(seed)
    device = model.null_text.device
    for batch in batches:
        mix = batch["mixture"].to(device)
        b, _, n = mix.shape
        z = model.encode_audio(mix)
        texts = [t if u else None for t, u in zip(batch["text"], batch["use_text"])]
        spans = [s if u else None for s, u in zip(batch["spans"], batch["use_span"])]
        videos = batch.get("video") or [None] * b
        if model.video_encoder is None:
            videos = [None] * b
        cond = model.encode_prompts(texts, spans, videos, z.shape[1], [n / model.sample_rate] * b)
        noise = torch.randn(b, z.shape[1], 2 * model.latent_dim, generator=gen).to(device)
        x1 = model.generate(z, cond, noise, nfe=nfe, method=method)
        est = model.decode_latents(x1[..., : model.latent_dim], n)[:, 0].cpu()
        est_res = model.decode_latents(x1[..., model.latent_dim :], n)[:, 0].cpu()
        ref = batch["target"][:, 0]
        m = batch["mixture"][:, 0]
        refined, _ = wiener_refine(m, est, est_res)
        present = torch.as_tensor(batch["target_present"], dtype=torch.bool)
        if present.any():
            s = si_sdr(est[present], ref[present])
            base = si_sdr(m[present], ref[present])
            sdrs += s.tolist()
            imps += (s - base).tolist()
            imps_w += (si_sdr(refined[present], ref[present]) - base).tolist()
        if (~present).any():
            absent += energy_ratio_db(est[~present], m[~present]).tolist()

    def mean(x):
        return float(sum(x) / len(x)) if x else float("nan")

    return {"si_sdr": mean(sdrs), "si_sdri": mean(imps), "si_sdri_wiener": mean(imps_w),
            "absent_energy_db": mean(absent)}


def _atomic_checkpoint_io():
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        """Write checkpoints to a temporary file and rename, so a kill never leaves a torn file."""

        def save_checkpoint(self, checkpoint, path, storage_options=None):
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)

    return AtomicCheckpointIO()


# --------------------------------------------------------------------- train
def train(cfg) -> dict[str, Any]:
    """Train a separator from a composed config; returns final metrics and paths.

    Args:
        cfg: the composed ``conf/train.yaml`` (an OmegaConf ``DictConfig``).

    Returns:
        ``{"out_dir", "last_checkpoint", "export_dir", "global_step", "val": {...}}``.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from separation.codec import DACVAE
    from separation.data.mixing import MixtureDataset, collate_mixtures
    from separation.model import build_separation_model

    torch.set_num_threads(int(cfg.trainer.get("threads", 2)))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    mcfg = model_config_from(cfg)
    codec = None
    if cfg.get("codec_checkpoint"):
        codec = DACVAE.from_pretrained(cfg.codec_checkpoint)
        mcfg.codec = codec.cfg
    model = build_separation_model(mcfg, codec=codec)
    module = _lightning_module_class()(model, cfg)

    ckpt_path = None
    last = out_dir / "last.ckpt"
    if cfg.get("resume") == "auto":
        ckpt_path = str(last) if last.is_file() else None
    elif cfg.get("resume"):
        ckpt_path = str(cfg.resume)
    start_step = 0
    if ckpt_path:
        start_step = int(torch.load(ckpt_path, map_location="cpu", weights_only=False)["global_step"])
        logger.info("resuming from %s at step %d", ckpt_path, start_step)

    train_ds = MixtureDataset(cfg.data.root, "train", mix_config_from(cfg, "train"), seed=int(cfg.seed),
                              length=int(cfg.data.train_items))
    bs = int(cfg.data.batch_size)
    loader = DataLoader(
        train_ds, batch_size=bs, sampler=StepSampler(start_step * bs, int(cfg.data.train_items)),
        collate_fn=collate_mixtures, num_workers=int(cfg.data.num_workers),
        persistent_workers=int(cfg.data.num_workers) > 0,
    )
    val_ds = MixtureDataset(cfg.data.root, "valid", mix_config_from(cfg, "valid"), seed=int(cfg.seed) + 1,
                            length=int(cfg.val.num_items))
    module.val_batches = list(DataLoader(val_ds, batch_size=min(bs, 16), collate_fn=collate_mixtures))
    # Lightning needs a val dataloader to call the validation hooks; one dummy batch is enough.
    dummy_val = DataLoader([0], batch_size=1)

    ckpt_cb = ModelCheckpoint(dirpath=str(out_dir), filename="step{step}", save_last=True, save_top_k=0,
                              every_n_train_steps=int(cfg.trainer.ckpt_every), auto_insert_metric_name=False)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=cfg.trainer.strategy, precision=cfg.trainer.precision, max_steps=int(cfg.trainer.max_steps),
        max_time=cfg.trainer.get("max_time"), log_every_n_steps=int(cfg.trainer.log_every),
        val_check_interval=int(cfg.val.every), check_val_every_n_epoch=None, num_sanity_val_steps=0,
        gradient_clip_val=float(cfg.optim.grad_clip), callbacks=[ckpt_cb, TQDMProgressBar(refresh_rate=10)],
        logger=TensorBoardLogger(str(out_dir), name="tb"), plugins=[_atomic_checkpoint_io()],
        enable_model_summary=False, use_distributed_sampler=False, deterministic=False,
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=dummy_val, ckpt_path=ckpt_path)
    trainer.save_checkpoint(str(last))

    result: dict[str, Any] = {"out_dir": str(out_dir), "last_checkpoint": str(last), "global_step": trainer.global_step}
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    result["val"] = metrics
    if cfg.get("export_dir") and trainer.is_global_zero:
        export = module.ema_model().save_pretrained(cfg.export_dir)
        result["export_dir"] = str(export)
        logger.info("exported EMA weights to %s", export)
    return result


def main(argv: list[str] | None = None) -> int:
    """Hydra entry point: ``python -m separation.train [overrides]`` (multirun and launchers work)."""
    import sys

    import hydra

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]

    def _run(cfg) -> None:
        result = train(cfg)
        logger.info("done: %s", result)
        print(result)

    hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")(_run)()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
