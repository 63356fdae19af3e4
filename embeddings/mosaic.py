"""``mosaic-tiny``: a self-supervised audio encoder in the AudioMosaic style (optional).

Contrastive learning on masked spectrogram patches: two views of the same log-mel crop,
each with a different random subset of time-frequency patches masked out (set to the
clip mean, 0 after standardisation) and, optionally, different crop offsets; the pooled
outputs of the audio tower go through a projection head and the NT-Xent (symmetric
InfoNCE) loss pulls the two views together against the other clips of the batch. No
labels are used. Downstream embeddings are taken *before* the projection head (the SimCLR
recipe): the tower's CLS output, or the mean and max of every stage's tokens (``embedding:
stages``, what the shipped release declares: chosen on valid, docs/EMBEDDINGS.md), L2-normalised.

The audio tower is the one of :mod:`embeddings.clap`, so both models share the
front-end, the frame layout and the trainer (``objective: mosaic`` in
``conf/embedding/train_clap.yaml``). Release folders are ``kind: promptsep_mosaic``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from embeddings.clap import (
    AudioTower,
    AudioTowerConfig,
    ReleaseMixin,
)
from embeddings.logmel import LogMel, standard_logmel
from promptsep import release

MOSAIC_KIND = "promptsep_mosaic"
#: the downstream embeddings a release can declare (``MosaicConfig.embedding``)
EMBEDDINGS = ("cls", "stages")
DEFAULT_MOSAIC_DIR = release.packaged_checkpoint("promptsep-mosaic-tiny")


@dataclass
class MosaicConfig(release.JsonConfig):
    """Self-supervised encoder settings.

    Attributes:
        audio: the audio tower.
        head_dim: output of the projection head used by the loss.
        patch_mels / patch_frames: patch size on the log-mel grid.
        mask_ratio: share of patches masked in each view.
        temperature: NT-Xent temperature.
        embedding: what :meth:`MosaicTiny.embed_audio` returns (see :data:`EMBEDDINGS`):
            ``"cls"``, the tower's CLS output (``D = width``; a release without the key), or
            ``"stages"``, the mean and the max over valid tokens of every stage (the convolutional
            stem and each transformer layer), each of these vectors unit-normed, concatenated and
            scaled to unit norm (``D = 2 (stem_dim + depth x width)``).
    """

    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    head_dim: int = 128
    patch_mels: int = 8
    patch_frames: int = 16
    mask_ratio: float = 0.5
    temperature: float = 0.1
    embedding: str = "cls"

    def __post_init__(self) -> None:
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"mosaic embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")



def mask_patches(mel: torch.Tensor, patch_mels: int, patch_frames: int, ratio: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a random ``ratio`` of the ``patch_mels x patch_frames`` patches of ``mel [B, M, F]``."""
    b, m, f = mel.shape
    gm, gf = -(-m // patch_mels), -(-f // patch_frames)
    keep = torch.rand(b, gm, gf, generator=generator) >= ratio
    keep = keep.repeat_interleave(patch_mels, 1)[:, :m].repeat_interleave(patch_frames, 2)[:, :, :f]
    return mel * keep.to(mel.device, mel.dtype)


def stage_pooling(stages: list[torch.Tensor], valid: torch.Tensor,
                  stats: tuple[str, ...] = ("mean", "max")) -> torch.Tensor:
    """The ``stages`` embedding: statistics over valid tokens of each stage (by default the mean and
    the max), each unit-normed, concatenated and scaled to unit norm.

    Args:
        stages: token outputs ``[B, T, C_i]`` of each stage (stem, then each transformer layer).
        valid: ``[B, T]`` (bool), at least one valid token per row (:class:`AudioTower` ensures it);
            whatever the padded positions hold does not reach the result.
        stats: which statistics, in order, from ``"mean"``, ``"max"`` and ``"std"`` (the
            standard deviation over valid tokens; zero, and so a zero part, for a single token).

    Returns:
        ``[B, len(stats) sum C_i]``.
    """
    if not bool(valid.any(dim=1).all()):
        raise ValueError("stage_pooling needs at least one valid token per row")
    unknown = set(stats) - {"mean", "max", "std"}
    if unknown or not stats:
        raise ValueError(f"stage_pooling stats must be a non-empty subset of mean/max/std, got {stats!r}")
    v = valid[..., None]
    n = v.sum(1)
    parts = []
    for tok in stages:
        mean = tok.masked_fill(~v, 0.0).sum(1) / n
        for stat in stats:
            if stat == "mean":
                x = mean
            elif stat == "max":
                x = tok.masked_fill(~v, float("-inf")).amax(1)
            else:
                x = ((tok - mean[:, None]).masked_fill(~v, 0.0).pow(2).sum(1) / n).sqrt()
            parts.append(F.normalize(x, dim=-1))
    return torch.cat(parts, dim=-1) / len(parts) ** 0.5


class MosaicTiny(ReleaseMixin, nn.Module):
    """Audio tower + projection head trained by masked-patch contrast."""

    KIND = MOSAIC_KIND
    CONFIG = MosaicConfig
    DEFAULT_DIR = DEFAULT_MOSAIC_DIR

    def __init__(self, cfg: MosaicConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or MosaicConfig()
        self.sample_rate = int(cfg.audio.mel.sample_rate)
        self.frontend = LogMel(cfg.audio.mel)
        self.audio_tower = AudioTower(cfg.audio)
        width = int(cfg.audio.width)
        self.dim = width if cfg.embedding == "cls" else 2 * (self.audio_tower.stem_dim + cfg.audio.depth * width)
        self.head = nn.Sequential(nn.Linear(cfg.audio.width, cfg.audio.width), nn.GELU(),
                                  nn.Linear(cfg.audio.width, cfg.head_dim))

    def mel(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, N]`` waveforms -> standardised log-mel ``[B, M, F]`` and valid frames ``[B]``."""
        return standard_logmel(self.frontend, wav, lengths)

    def audio_from_mel(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Downstream embeddings ``[B, D]`` (unit norm) of standardised log-mel ``[B, M, F]``, as
        ``cfg.embedding`` says (:class:`MosaicConfig`)."""
        if self.cfg.embedding == "cls":
            cls, _, _ = self.audio_tower(mel, frames)
            return F.normalize(cls, dim=-1)
        stem, layers, valid = self.audio_tower.hidden_states(mel, frames)
        return stage_pooling([stem] + [h[:, 1:] for h in layers], valid)

    def embed_audio(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Downstream embeddings ``[B, D]`` of waveforms ``[B, N]`` (unit norm; see :meth:`audio_from_mel`)."""
        mel, frames = self.mel(wav, lengths)
        return self.audio_from_mel(mel, frames)

    def embed_frames(self, wav: torch.Tensor, lengths: torch.Tensor | None = None):
        """Token embeddings ``[B, T, D]`` (unit norm, zero at padding), timestamps ``[B, T]`` and valid ``[B, T]``.

        With ``embedding: stages`` a token's embedding is :func:`stage_pooling` applied to that
        token alone (its mean and its max are the token itself), so frames and clips share one space.
        """
        mel, frames = self.mel(wav, lengths)
        if self.cfg.embedding == "cls":
            _, tokens, valid = self.audio_tower(mel, frames)
            emb = F.normalize(tokens, dim=-1)
        else:
            stem, layers, valid = self.audio_tower.hidden_states(mel, frames)
            stages = [F.normalize(tok, dim=-1) for tok in [stem] + [h[:, 1:] for h in layers]]
            emb = torch.cat([p for tok in stages for p in (tok, tok)], dim=-1) / (2 * len(stages)) ** 0.5
        ts = (torch.arange(emb.shape[1], device=wav.device) + 0.5) * self.cfg.audio.token_seconds
        return emb * valid[..., None], ts[None].expand(emb.shape[0], -1), valid

    def loss(self, view_a: torch.Tensor, view_b: torch.Tensor, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        """NT-Xent between two masked views of standardised log-mel ``[B, M, F]`` crops."""
        from embeddings.clap import contrastive_loss

        c = self.cfg
        a = mask_patches(view_a, c.patch_mels, c.patch_frames, c.mask_ratio, generator)
        b = mask_patches(view_b, c.patch_mels, c.patch_frames, c.mask_ratio, generator)
        za = F.normalize(self.head(self.audio_tower(a)[0]), dim=-1)
        zb = F.normalize(self.head(self.audio_tower(b)[0]), dim=-1)
        scale = torch.tensor(1.0 / c.temperature, device=za.device).log()
        return contrastive_loss(za, zb, scale)
