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
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from promptsep.release import config_from_dict
from separation.harness import (
    CONF_DIR,
    EMA,
    StepSampler,
    build_trainer,
    cosine_warmup,
    fit,
    hydra_entry,
    resume_checkpoint,
    resume_step,
)

logger = logging.getLogger(__name__)

__all__ = ["CONF_DIR", "SeparationModule", "StepSampler", "evaluate_si_sdri", "main", "model_config_from", "train"]


# ------------------------------------------------------------------- configs
def model_config_from(cfg) -> Any:
    """Build a :class:`~separation.model.SeparationModelConfig` from the composed Hydra config."""
    from omegaconf import OmegaConf

    from prompts.text import TextEncoderConfig
    from prompts.video import VideoEncoderConfig
    from separation.codec import codec_config_from_dict
    from separation.dit import DiTConfig
    from separation.flow import FlowConfig
    from separation.model import SeparationModelConfig

    def make(kls, node, where):
        """Strict: a key the dataclass does not know (a misspelt override) is an error naming it."""
        return config_from_dict(kls, OmegaConf.to_container(node, resolve=True) if node is not None else {}, where)

    unknown = sorted(set(cfg.model) - {"dit", "text", "video"})
    if unknown:
        raise ValueError(f"unknown model config key(s) {', '.join('model.' + k for k in unknown)}")
    video = cfg.model.get("video")
    return SeparationModelConfig(
        codec=codec_config_from_dict(OmegaConf.to_container(cfg.codec, resolve=True), "codec"),
        dit=make(DiTConfig, cfg.model.dit, "model.dit"),
        flow=make(FlowConfig, cfg.flow, "flow"),
        text=make(TextEncoderConfig, cfg.model.text, "model.text"),
        video=make(VideoEncoderConfig, video, "model.video") if video is not None else None,
    )


def mix_config_from(cfg, split: str) -> Any:
    """The :class:`~separation.data.mixing.MixConfig` of the ``data:`` node, strictly.

    ``root``, ``batch_size``, ``num_workers`` and ``train_items`` configure the loaders; every
    other key must be a mixing option (a misspelt ``data.*`` override is an error naming it).
    Video items are drawn only when the model has a video tower and a video prompt kind
    (``video``, ``text+video``) has a probability above zero.
    ``split`` does not change the options (augmentation's ``train_only`` is applied by the dataset).
    """
    from omegaconf import OmegaConf

    from separation.data.mixing import VIDEO_KINDS, mix_config_from_dict

    d = OmegaConf.to_container(cfg.data, resolve=True)
    kinds = d.get("prompt_kinds") or {}
    video = cfg.model.get("video") is not None and any(kinds.get(k, 0) > 0 for k in VIDEO_KINDS)
    return mix_config_from_dict(d, loader_keys=DATA_LOADER_KEYS, video=video,
                                sample_rate=int(cfg.codec.sample_rate))


#: Keys of the separator's ``data:`` node that configure the loaders, not the mixing.
DATA_LOADER_KEYS = ("root", "batch_size", "num_workers", "train_items")


# ---------------------------------------------------------------- lightning
class SeparationModule(L.LightningModule):
    """Lightning wrapper: flow-matching loss, EMA of the trainable weights, validation SI-SDRi.

    Validation runs through Lightning's loop over the valid loader: each batch is separated
    with the EMA weights (:func:`si_sdri_batch`), the epoch logs the means.
    """

    def __init__(self, model, cfg):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.ema = EMA(self._ema_tensors(), float(cfg.optim.ema_decay))
        self._val: dict[str, list[float]] = {}
        self._val_model = None

    def _ema_tensors(self):
        """The EMA'd tensors: the backbone, the null embeddings and a trainable video tower (the
        frozen parts need none)."""
        yield from (("dit." + k, v) for k, v in self.model.dit.named_parameters())
        yield "null_text", self.model.null_text
        yield "null_video", self.model.null_video
        tower = self.model.video_encoder
        if tower is not None and tower.cfg.trainable:
            yield from (("video_encoder." + k, v) for k, v in tower.named_parameters())

    def training_step(self, batch, batch_idx):
        gen = torch.Generator(device="cpu").manual_seed(int(self.cfg.seed) * 1_000_003 + self.global_step)
        out = self.model.training_loss(batch, generator=gen)
        b = batch["mixture"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=b)
        for k in ("latent_loss", "wave_loss"):
            if k in out:
                self.log(f"train/{k}", out[k], batch_size=b)
        return out["loss"]

    def optimizer_step(self, *args, **kwargs):
        # Right after the weights move, before any callback (ModelCheckpoint saves in on_train_batch_end,
        # which runs before the module's own hook): a checkpoint always holds the EMA of its step.
        super().optimizer_step(*args, **kwargs)
        self.ema.update(self._ema_tensors(), self.global_step)

    def configure_optimizers(self):
        o = self.cfg.optim
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, betas=tuple(o.betas))
        # The cosine's length: optim.schedule_steps when set (a run stopped early at trainer.max_steps
        # then follows exactly the LR path of the full run: ablation legs, legs of one schedule).
        total = o.get("schedule_steps") or self.cfg.trainer.max_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_warmup(total, o.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint):
        checkpoint["ema"] = self.ema.state_dict()
        checkpoint["rng_torch"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint):
        self.ema.load_state_dict(checkpoint["ema"])
        if "rng_torch" in checkpoint:
            torch.set_rng_state(checkpoint["rng_torch"])

    def ema_model(self):
        """A copy of the model carrying the EMA weights (for export and validation)."""
        m = copy.deepcopy(self.model)
        sh = self.ema.shadow
        m.dit.load_state_dict({k[4:]: v for k, v in sh.items() if k.startswith("dit.")})
        m.null_text.data.copy_(sh["null_text"])
        m.null_video.data.copy_(sh["null_video"])
        tower = {k[len("video_encoder."):]: v for k, v in sh.items() if k.startswith("video_encoder.")}
        if tower:
            m.video_encoder.load_state_dict(tower, strict=False)  # its non-persistent buffers are not EMA'd
        return m.eval()

    def on_validation_epoch_start(self):
        self._val = {"si_sdr": [], "si_sdri": [], "si_sdri_wiener": [], "absent_energy_db": []}
        self._val_model = self.ema_model()
        self._val_gen = torch.Generator().manual_seed(0)

    def validation_step(self, batch, batch_idx):
        part = si_sdri_batch(self._val_model, batch, nfe=int(self.cfg.val.nfe), generator=self._val_gen,
                             method=str(self.cfg.val.get("method", "midpoint")))
        for k, v in part.items():
            self._val[k] += v

    def on_validation_epoch_end(self):
        for k, v in _means(self._val).items():
            self.log(f"val/{k}", v, prog_bar=k == "si_sdri")
        self._val_model = None


def _means(acc: dict[str, list[float]]) -> dict[str, float]:
    return {k: float(sum(v) / len(v)) if v else float("nan") for k, v in acc.items()}


@torch.no_grad()
def si_sdri_batch(model, batch, nfe: int, generator: torch.Generator, method: str = "midpoint") -> dict[str, list[float]]:
    """Per-item SI-SDR figures of one collated batch (see :func:`evaluate_si_sdri`)."""
    from separation.metrics import energy_ratio_db, si_sdr
    from separation.refine import wiener_refine

    out: dict[str, list[float]] = {"si_sdr": [], "si_sdri": [], "si_sdri_wiener": [], "absent_energy_db": []}
    device = model.null_text.device
    mix = batch["mixture"].to(device)
    b, _, n = mix.shape
    z = model.encode_audio(mix)
    texts = [t if u else None for t, u in zip(batch["text"], batch["use_text"])]
    spans = [s if u else None for s, u in zip(batch["spans"], batch["use_span"])]
    videos = batch.get("video") or [None] * b
    if model.video_encoder is None:
        videos = [None] * b
    cond = model.encode_prompts(texts, spans, videos, z.shape[1], [n / model.sample_rate] * b)
    noise = torch.randn(b, z.shape[1], 2 * model.latent_dim, generator=generator).to(device)
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
        out["si_sdr"] += s.tolist()
        out["si_sdri"] += (s - base).tolist()
        out["si_sdri_wiener"] += (si_sdr(refined[present], ref[present]) - base).tolist()
    if (~present).any():
        out["absent_energy_db"] += energy_ratio_db(est[~present], m[~present]).tolist()
    return out


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
    gen = torch.Generator().manual_seed(seed)
    acc: dict[str, list[float]] = {}
    for batch in batches:
        for k, v in si_sdri_batch(model, batch, nfe, gen, method).items():
            acc.setdefault(k, []).extend(v)
    return _means(acc)


# --------------------------------------------------------------------- train
def train(cfg) -> dict[str, Any]:
    """Train a separator from a composed config; returns final metrics and paths.

    Args:
        cfg: the composed ``conf/train.yaml`` (an OmegaConf ``DictConfig``).

    Returns:
        ``{"out_dir", "last_checkpoint", "export_dir", "global_step", "val": {...}}``.
    """
    from separation.codec import codec_config_from_dict, compute_latent_stats, load_codec_release
    from separation.data.mixing import MixtureDataset, collate_mixtures
    from separation.mdct_codec import MDCTCodec, MDCTCodecConfig
    from separation.model import build_separation_model

    torch.set_num_threads(int(cfg.trainer.get("threads", 2)))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    mcfg = model_config_from(cfg)
    train_mix, val_mix = mix_config_from(cfg, "train"), mix_config_from(cfg, "valid")  # bad keys fail before any work
    codec = None
    export_sampling = None  # a fine-tune's export: the init release's chosen sampling, not SamplingDefaults
    init_from = cfg.get("init_from")
    if init_from:  # fine-tuning: the release's codec (with its latent statistics) comes with its weights
        from promptsep.release import read_meta
        from separation.model import MODEL_KIND

        init_cfg = read_meta(init_from, MODEL_KIND)[1]["config"]
        mcfg.codec = codec_config_from_dict(init_cfg["codec"])
        if init_cfg.get("sampling"):  # the export gets the release's chosen sampler (training is unchanged)
            from separation.model import SamplingDefaults

            export_sampling = config_from_dict(SamplingDefaults, init_cfg["sampling"], "init_from sampling")
        if int(mcfg.codec.sample_rate) != int(cfg.codec.sample_rate):  # the data is mixed at cfg.codec's rate
            raise ValueError(f"init_from={init_from} has a {mcfg.codec.sample_rate} Hz codec, but this run's codec "
                             f"config is {cfg.codec.sample_rate} Hz: choose the matching codec= group")
    if init_from and isinstance(mcfg.codec, MDCTCodecConfig):
        codec = MDCTCodec(mcfg.codec)
    elif init_from:  # a learned codec: built from the release's config, its weights come with init_from
        codec = None
    elif cfg.get("codec_checkpoint"):
        codec = load_codec_release(cfg.codec_checkpoint)
        mcfg.codec = codec.cfg
    elif isinstance(mcfg.codec, MDCTCodecConfig) and mcfg.codec.latent_std is None:
        codec = MDCTCodec(mcfg.codec)
        stats_ds = MixtureDataset(cfg.data.root, "train", train_mix, seed=int(cfg.seed) + 7,
                                  length=int(cfg.get("codec_stats_items", 256)))
        batches = (b["mixture"] for b in DataLoader(stats_ds, batch_size=16, collate_fn=collate_mixtures))
        codec.set_latent_stats(*compute_latent_stats(codec, batches))
        mcfg.codec = codec.cfg
        logger.info("MDCT latent statistics from %d train mixtures", len(stats_ds))
    model = build_separation_model(mcfg, codec=codec)
    ckpt_path = resume_checkpoint(cfg, out_dir)
    if init_from and ckpt_path is None:  # a resumed run has its weights in the checkpoint already
        model.init_from_release(init_from)
    module = SeparationModule(model, cfg)
    start_step = resume_step(ckpt_path)

    train_ds = MixtureDataset(cfg.data.root, "train", train_mix, seed=int(cfg.seed),
                              length=int(cfg.data.train_items))
    bs = int(cfg.data.batch_size)
    loader = DataLoader(
        train_ds, batch_size=bs, sampler=StepSampler(start_step * bs, int(cfg.data.train_items)),
        collate_fn=collate_mixtures, num_workers=int(cfg.data.num_workers),
        persistent_workers=int(cfg.data.num_workers) > 0,
    )
    val_ds = MixtureDataset(cfg.data.root, "valid", val_mix, seed=int(cfg.seed) + 1,
                            length=int(cfg.val.num_items))
    val_loader = DataLoader(val_ds, batch_size=min(bs, 16), collate_fn=collate_mixtures)
    trainer = build_trainer(cfg.trainer, out_dir, int(cfg.trainer.max_steps), grad_clip=float(cfg.optim.grad_clip),
                            ckpt_every=int(cfg.trainer.ckpt_every), val_every=int(cfg.val.every), deterministic=False)
    last = fit(trainer, module, loader, ckpt_path, out_dir, val_loader=val_loader)

    result: dict[str, Any] = {"out_dir": str(out_dir), "last_checkpoint": str(last), "global_step": trainer.global_step}
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    result["val"] = metrics
    if cfg.get("export_dir") and trainer.is_global_zero:
        ema = module.ema_model()
        if export_sampling is not None:
            ema.cfg.sampling = export_sampling
            logger.info("export carries init_from's sampling %s; choose it again for the new weights with "
                        "scripts/choose_sampling.py", export_sampling)
        export = ema.save_pretrained(cfg.export_dir)
        result["export_dir"] = str(export)
        logger.info("exported EMA weights to %s", export)
    return result


def main(argv: list[str] | None = None) -> int:
    """Hydra entry point: ``python -m separation.train [overrides]`` (multirun and launchers work)."""
    return hydra_entry("train", train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
