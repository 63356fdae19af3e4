"""MDCT codec: a linear, full-band, critically sampled, perfect-reconstruction transform.

This is *not* a learned codec. It is the modified discrete cosine transform (TDAC, Princen &
Bradley) with a sine window: frames of ``2 * hop`` samples overlapping by half, ``hop``
real coefficients per frame, so ``N`` samples give ``ceil(N / hop)`` frames of ``hop``
coefficients (critically sampled) and :meth:`MDCTCodec.decode` returns the input exactly
(to float precision) over the whole 0 - ``sample_rate / 2`` band. The learned DAC-VAE
(:class:`separation.codec.DACVAE`) remains the codec of SAM Audio's 48 kHz layout; this
transform is the 16 kHz latent of the CPU-trained separator, chosen because a codec that
loses nothing lets the separator's ceiling be set by the separator alone.

Framing: latent frame ``k`` analyses samples ``[k * hop - hop / 2, k * hop + 3 * hop / 2)``
(so it is centred on the samples ``[k * hop, (k + 1) * hop)`` it stands for, as the DAC-VAE's
frames are); the signal is zero-padded outside ``[0, N)``. In the first and last half frame
only one window covers the signal; there the time-domain aliasing folds onto the zero padding,
and dividing by the squared window (at least ~0.5) restores the samples exactly.

Latent normalisation: as :class:`~separation.codec.DACVAE`, :meth:`encode` returns
``(coef - latent_mean) / latent_std`` per coefficient (statistics in the config, set with
:meth:`set_latent_stats`, e.g. from :func:`separation.codec.compute_latent_stats`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from promptsep import release
from promptsep.errors import InputError

KIND = "mdct"


@dataclass
class MDCTCodecConfig(release.JsonConfig):
    """Layout of an :class:`MDCTCodec`.

    Attributes:
        kind: always ``"mdct"`` (tells this config from a DAC-VAE's in a release).
        sample_rate: audio rate in Hz.
        hop: samples per frame = coefficients per frame (the window is ``2 * hop`` long; even).
        latent_mean / latent_std: per-coefficient normalisation ``[hop]`` or None (0 / 1).
    """

    kind: str = KIND
    sample_rate: int = 16000
    hop: int = 320
    latent_mean: list[float] | None = None
    latent_std: list[float] | None = None

    def __post_init__(self) -> None:
        if self.kind != KIND:
            raise ValueError(f"MDCTCodecConfig.kind must be {KIND!r}, got {self.kind!r}")
        self.latent_mean, self.latent_std = release.float_list(self.latent_mean), release.float_list(self.latent_std)

    @property
    def hop_length(self) -> int:
        return int(self.hop)

    @property
    def latent_dim(self) -> int:
        return int(self.hop)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def validate(self) -> None:
        """Raise ``ValueError`` naming the problem if the layout is inconsistent."""
        if self.sample_rate <= 0:
            raise ValueError(f"codec sample_rate must be positive, got {self.sample_rate}")
        if self.hop < 2 or self.hop % 2:
            raise ValueError(f"MDCT hop must be an even number >= 2, got {self.hop}")
        for name in ("latent_mean", "latent_std"):
            v = getattr(self, name)
            if v is not None and len(v) != self.hop:
                raise ValueError(f"codec {name} has {len(v)} values, expected hop = {self.hop}")
        if self.latent_std is not None and any(not (s > 0) for s in self.latent_std):
            raise ValueError("codec latent_std values must all be positive")


def mdct_basis(hop: int) -> torch.Tensor:
    """Sine-windowed, orthonormally scaled MDCT basis ``[hop, 2 * hop]`` (float64).

    ``X[k] = sqrt(2 / hop) * sum_n w[n] x[n] cos(pi / hop * (n + 1/2 + hop/2) * (k + 1/2))`` with
    ``w[n] = sin(pi * (n + 1/2) / (2 * hop))``; the same matrix synthesises (TDAC).
    """
    n = torch.arange(2 * hop, dtype=torch.float64)
    k = torch.arange(hop, dtype=torch.float64)
    window = torch.sin(math.pi * (n + 0.5) / (2 * hop))
    cos = torch.cos(math.pi / hop * (n[None, :] + 0.5 + hop / 2) * (k[:, None] + 0.5))
    return math.sqrt(2.0 / hop) * window[None, :] * cos


class MDCTCodec(nn.Module):
    """The MDCT as a codec with the :class:`~separation.codec.DACVAE` interface (encode/decode/release).

    Attributes:
        cfg: the :class:`MDCTCodecConfig`.
        sample_rate / hop_length / frame_rate / latent_dim: as the DAC-VAE's.
    """

    def __init__(self, cfg: MDCTCodecConfig):
        super().__init__()
        cfg = dataclasses.replace(cfg)  # own copy: set_latent_stats writes into it
        cfg.validate()
        self.cfg = cfg
        self.sample_rate = int(cfg.sample_rate)
        self.hop_length = int(cfg.hop)
        self.frame_rate = float(cfg.frame_rate)
        self.latent_dim = int(cfg.hop)
        h = self.hop_length
        basis = mdct_basis(h)
        self.register_buffer("basis", basis.float()[:, None, :], persistent=False)  # [C, 1, 2h]
        # squared window overlap-added: 1 inside, w^2 over the half frames at both ends (see module doc)
        w2 = torch.sin(math.pi * (torch.arange(2 * h, dtype=torch.float64) + 0.5) / (2 * h)).pow(2)
        self.register_buffer("edge_gain", (1.0 / w2[h // 2 : h]).float(), persistent=False)  # [h/2]
        mean = torch.zeros(h) if cfg.latent_mean is None else torch.tensor(cfg.latent_mean)
        std = torch.ones(h) if cfg.latent_std is None else torch.tensor(cfg.latent_std)
        self.register_buffer("latent_mean", mean.float())
        self.register_buffer("latent_std", std.float())

    def num_frames(self, num_samples: int) -> int:
        """Latent frames for ``num_samples`` samples: ``ceil(N / hop)``."""
        return -(-int(num_samples) // self.hop_length)

    def param_count(self, trainable_only: bool = False) -> int:
        """Number of parameters (none: the transform is fixed)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def analyse(self, wav: torch.Tensor) -> torch.Tensor:
        """Raw MDCT coefficients: audio ``[B, 1, N]`` -> ``[B, hop, ceil(N / hop)]``."""
        if not isinstance(wav, torch.Tensor) or wav.dim() != 3 or wav.shape[1] != 1:
            shape = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise InputError(f"codec input must be mono audio shaped [B, 1, N], got {shape}")
        if wav.shape[-1] == 0:
            raise InputError("codec input is empty (0 samples)")
        h = self.hop_length
        t = self.num_frames(wav.shape[-1])
        x = nn.functional.pad(wav, (h // 2, (t + 1) * h - h // 2 - wav.shape[-1]))
        return nn.functional.conv1d(x, self.basis.to(wav.dtype), stride=h)

    def synthesise(self, coef: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`analyse`: raw coefficients ``[B, hop, T]`` -> audio ``[B, 1, T * hop]``."""
        h = self.hop_length
        t = coef.shape[-1]
        y = nn.functional.conv_transpose1d(coef, self.basis.to(coef.dtype), stride=h)[..., h // 2 : h // 2 + t * h]
        g = self.edge_gain.to(y.dtype)
        return torch.cat([y[..., : h // 2] * g, y[..., h // 2 : -(h // 2)], y[..., -(h // 2):] * g.flip(0)], dim=-1)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Normalised coefficients ``[B, hop, ceil(N / hop)]`` of audio ``[B, 1, N]``."""
        return (self.analyse(wav) - self.latent_mean[:, None]) / self.latent_std[:, None]

    def encode_dist(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(raw coefficients, log-variance)``: the transform is deterministic (log-variance -inf
        is given as a large negative constant), for code written against the DAC-VAE."""
        coef = self.analyse(wav)
        return coef, torch.full_like(coef, -30.0)

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Normalised coefficients ``[B, hop, T]`` -> audio ``[B, 1, length or T * hop]``."""
        from separation.codec import check_latents

        check_latents(self, z, length)
        y = self.synthesise(z * self.latent_std[:, None] + self.latent_mean[:, None])
        return y if length is None else y[..., : int(length)]

    @torch.no_grad()
    def set_latent_stats(self, mean: torch.Tensor | Iterable[float], std: torch.Tensor | Iterable[float]) -> None:
        """Set the per-coefficient normalisation (buffers and config)."""
        from separation.codec import write_latent_stats

        write_latent_stats(self, mean, std)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write a release folder (``config.json`` + ``model.safetensors`` with the statistics)."""
        return release.save_release(path, self.state_dict(), self.cfg.to_dict(), KIND)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> MDCTCodec:
        """Load a folder written by :meth:`save_pretrained` (strictly, checksum verified)."""
        root, meta, state = release.read_release(path, KIND, map_location)
        model = cls(MDCTCodecConfig.from_dict(meta["config"]))
        release.load_state_strict(model, state, model.state_dict().keys(), root)
        return model.to(map_location).eval()
