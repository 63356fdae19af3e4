"""Losses for training the DAC-VAE codec (:mod:`separation.codec`).

The reconstruction objective follows DAC / stable-audio-tools: a multi-resolution
STFT loss (log-magnitude L1 + spectral convergence), a multi-scale log-mel L1 loss, a
waveform L1 loss, and a KL term pulling the posterior towards N(0, 1). There is no
adversarial term: CPU training runs are short and the spectral losses alone train a
usable codec.

Training code calls :func:`codec_train_step` (one forward pass + all losses);
:func:`codec_loss` takes the codec outputs so the reconstruction can be reused.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

_EPS = 1e-7


@dataclass
class CodecLossConfig:
    """Loss weights and resolutions for codec training.

    Attributes:
        kl_weight: weight of the mean KL divergence to N(0, 1).
        waveform_weight: weight of the waveform L1 loss.
        stft_weight: weight of the multi-resolution STFT loss.
        mel_weight: weight of the multi-scale log-mel loss.
        stft_windows: STFT window lengths (hop = window / 4).
        mel_windows: mel STFT window lengths (hop = window / 4), paired with ``mel_bins``.
        mel_bins: mel bands per mel resolution.
        log_mag_weight: weight of the log-magnitude L1 term inside the STFT loss.
        spectral_convergence_weight: weight of the spectral-convergence term inside the STFT loss.
    """

    kl_weight: float = 1e-4
    waveform_weight: float = 1.0
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    stft_windows: tuple[int, ...] = (2048, 512, 128)
    mel_windows: tuple[int, ...] = (1024, 256, 64)
    mel_bins: tuple[int, ...] = (80, 40, 10)
    log_mag_weight: float = 1.0
    spectral_convergence_weight: float = 1.0

    def __post_init__(self) -> None:
        self.stft_windows = tuple(int(w) for w in self.stft_windows)
        self.mel_windows = tuple(int(w) for w in self.mel_windows)
        self.mel_bins = tuple(int(b) for b in self.mel_bins)
        if len(self.mel_windows) != len(self.mel_bins):
            raise ValueError(
                f"mel_windows {self.mel_windows} and mel_bins {self.mel_bins} must have the same length"
            )
        if any(w < 4 for w in self.stft_windows + self.mel_windows):
            raise ValueError("STFT / mel window lengths must be at least 4 samples")


# --------------------------------------------------------------------------- spectra
def _magnitude(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    """``[B, 1, N]`` or ``[B, N]`` -> STFT magnitude ``[B, n_fft // 2 + 1, frames]``."""
    x = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=max(1, n_fft // 4), window=window, center=True,
                      pad_mode="constant", return_complex=True)
    return spec.abs().clamp_min(_EPS)


@functools.lru_cache(maxsize=32)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """HTK mel filterbank ``[n_fft // 2 + 1, n_mels]`` (CPU, float32, cached)."""
    import torchaudio.functional as AF

    return AF.melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate,
                              norm=None, mel_scale="htk").float()


def stft_loss(est: torch.Tensor, ref: torch.Tensor, windows: Sequence[int] = (2048, 512, 128),
              log_mag_weight: float = 1.0, sc_weight: float = 1.0) -> torch.Tensor:
    """Multi-resolution STFT loss (mean over resolutions).

    Args:
        est: estimate ``[B, 1, N]``.
        ref: reference ``[B, 1, N]``.
        windows: window lengths; hop is a quarter window.
        log_mag_weight: weight of the L1 distance of log magnitudes.
        sc_weight: weight of the spectral convergence ``||S_ref - S_est||_F / ||S_ref||_F``.

    Returns:
        scalar loss.
    """
    total = est.new_zeros(())
    for n_fft in windows:
        s_est, s_ref = _magnitude(est, n_fft), _magnitude(ref, n_fft)
        log_mag = (s_est.log() - s_ref.log()).abs().mean()
        sc = (torch.linalg.vector_norm(s_ref - s_est, dim=(-2, -1))
              / torch.linalg.vector_norm(s_ref, dim=(-2, -1)).clamp_min(1e-5)).mean()
        total = total + log_mag_weight * log_mag + sc_weight * sc
    return total / max(1, len(windows))


def mel_loss(est: torch.Tensor, ref: torch.Tensor, sample_rate: int,
             windows: Sequence[int] = (1024, 256, 64), bins: Sequence[int] = (80, 40, 10)) -> torch.Tensor:
    """Multi-scale log-mel L1 loss (mean over scales).

    Args:
        est: estimate ``[B, 1, N]``.
        ref: reference ``[B, 1, N]``.
        sample_rate: audio rate in Hz.
        windows: STFT window lengths (hop = window / 4).
        bins: mel bands for each window.

    Returns:
        scalar loss.
    """
    total = est.new_zeros(())
    for n_fft, n_mels in zip(windows, bins):
        fb = _mel_filters(int(sample_rate), int(n_fft), int(n_mels)).to(est.device, est.dtype)
        m_est = torch.einsum("bft,fm->bmt", _magnitude(est, n_fft), fb).clamp_min(1e-5)
        m_ref = torch.einsum("bft,fm->bmt", _magnitude(ref, n_fft), fb).clamp_min(1e-5)
        total = total + (m_est.log10() - m_ref.log10()).abs().mean()
    return total / max(1, len(windows))


# ----------------------------------------------------------------- codec objective
def codec_loss(out: dict[str, torch.Tensor], wav: torch.Tensor, cfg: CodecLossConfig, sample_rate: int,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted codec (generator) loss from a :meth:`DACVAE.forward` output.

    Args:
        out: the codec's forward dict (``recon`` ``[B, 1, N]``, ``kl`` scalar).
        wav: the input audio ``[B, 1, N]``.
        cfg: loss weights.
        sample_rate: audio rate (for the mel filterbanks).

    Returns:
        ``(loss, logs)``; logs hold detached scalar tensors (``loss``, ``wave``, ``stft``,
        ``mel``, ``kl``).
    """
    recon = out["recon"]
    if recon.shape != wav.shape:
        raise ValueError(f"reconstruction shape {tuple(recon.shape)} differs from input {tuple(wav.shape)}")
    terms: dict[str, torch.Tensor] = {}
    loss = recon.new_zeros(())
    if cfg.waveform_weight:
        terms["wave"] = (recon - wav).abs().mean()
        loss = loss + cfg.waveform_weight * terms["wave"]
    if cfg.stft_weight and cfg.stft_windows:
        terms["stft"] = stft_loss(recon, wav, cfg.stft_windows, cfg.log_mag_weight,
                                  cfg.spectral_convergence_weight)
        loss = loss + cfg.stft_weight * terms["stft"]
    if cfg.mel_weight and cfg.mel_windows:
        terms["mel"] = mel_loss(recon, wav, sample_rate, cfg.mel_windows, cfg.mel_bins)
        loss = loss + cfg.mel_weight * terms["mel"]
    terms["kl"] = out["kl"]
    loss = loss + cfg.kl_weight * out["kl"]
    logs = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
    return loss, logs


def codec_train_step(codec: nn.Module, wav: torch.Tensor, loss_cfg: CodecLossConfig | None = None,
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One codec forward pass and its loss (the caller runs backward and the optimiser).

    Args:
        codec: a :class:`~separation.codec.DACVAE` (in training mode for the sampled bottleneck).
        wav: audio batch ``[B, 1, N]`` at the codec's sample rate.
        loss_cfg: loss weights (default :class:`CodecLossConfig`).

    Returns:
        ``(loss, logs)`` as in :func:`codec_loss`.
    """
    cfg = loss_cfg if loss_cfg is not None else CodecLossConfig()
    if wav.dim() == 2:
        wav = wav.unsqueeze(1)
    out = codec(wav)
    return codec_loss(out, wav, cfg, codec.sample_rate)
