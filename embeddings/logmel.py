"""Shared audio front-end of the audio-text embeddings (embeddings.clap) and the embedding benchmark: batching, resampling, log-mel.

Everything here works on mono waveforms at a known rate. A batch of waveforms of
different lengths is padded to the longest with zeros and carries its lengths, so
models can mask the padding out of their pooling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

AudioBatch = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


def as_wav_list(audio: AudioBatch) -> list[torch.Tensor]:
    """Normalise a batch to a list of mono ``[N]`` float32 CPU tensors.

    Args:
        audio: a ``[B, N]`` tensor/array, a single ``[N]`` waveform, or a sequence of ``[N]``
            (or ``[1, N]``) waveforms.

    Returns:
        ``B`` tensors ``[N_i]``.

    Raises:
        ValueError: empty batch, empty or multi-channel waveforms, non-finite samples.
    """
    if isinstance(audio, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(audio)
        if t.dim() == 1:
            items = [t]
        elif t.dim() == 2:
            items = list(t)
        else:
            raise ValueError(f"audio batch must be [B, N] or a list of [N] waveforms, got shape {tuple(t.shape)}")
    else:
        items = [torch.as_tensor(a) for a in audio]
    if not items:
        raise ValueError("empty audio batch")
    out = []
    for i, w in enumerate(items):
        if w.dim() == 2 and w.shape[0] == 1:
            w = w[0]
        if w.dim() != 1:
            raise ValueError(f"item {i}: expected a mono [N] waveform, got shape {tuple(w.shape)}")
        if w.numel() == 0:
            raise ValueError(f"item {i}: empty waveform")
        w = w.detach().to("cpu", torch.float32)
        if not torch.isfinite(w).all():
            raise ValueError(f"item {i}: waveform has NaN or infinite samples")
        out.append(w)
    return out


def pad_batch(wavs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[N_i]`` waveforms into ``([B, N_max], lengths [B])`` with zero padding."""
    lengths = torch.tensor([int(w.shape[-1]) for w in wavs])
    out = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        out[i, : w.shape[-1]] = w
    return out, lengths


def resample_list(wavs: Sequence[torch.Tensor], orig_sr: int, new_sr: int) -> list[torch.Tensor]:
    """Resample every ``[N]`` waveform of a list (no-op when the rates agree)."""
    if int(orig_sr) == int(new_sr):
        return list(wavs)
    from promptsep.audio import resample

    return [resample(w[None], int(orig_sr), int(new_sr))[0] for w in wavs]


@dataclass
class MelConfig:
    """Log-mel front-end settings (16 kHz, 32 ms windows, 10 ms hop, 64 bands by default)."""

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 8000.0


class LogMel(nn.Module):
    """Waveforms ``[B, N]`` -> natural-log mel power ``[B, M, F]`` (``F = N // hop + 1`` frames)."""

    def __init__(self, cfg: MelConfig | None = None):
        super().__init__()
        import torchaudio

        self.cfg = cfg = cfg or MelConfig()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
            f_min=cfg.f_min, f_max=min(cfg.f_max, cfg.sample_rate / 2), power=2.0, center=True,
        )

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames for ``num_samples`` samples (centred STFT)."""
        return num_samples // self.cfg.hop_length + 1

    @torch.no_grad()
    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return torch.log(self.mel(wav.float()) + 1e-6)


def normalise_logmel(logmel: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
    """Per-clip standardisation of log-mel ``[B, M, F]`` over its valid frames (gain invariant).

    Args:
        logmel: natural-log mel power.
        frames: valid frames per item ``[B]`` (None: all).

    Returns:
        ``(logmel - mean) / std`` with one mean and one std per clip; padding is set to 0.
    """
    b, _, f = logmel.shape
    if frames is None:
        valid = torch.ones(b, 1, f, dtype=torch.bool, device=logmel.device)
    else:
        valid = (torch.arange(f, device=logmel.device)[None] < frames.to(logmel.device)[:, None])[:, None]
    w = valid.float().expand_as(logmel)
    count = w.sum(dim=(1, 2)).clamp_min(1.0)
    mean = (logmel * w).sum(dim=(1, 2)) / count
    var = ((logmel - mean[:, None, None]) ** 2 * w).sum(dim=(1, 2)) / count
    out = (logmel - mean[:, None, None]) / var.sqrt().clamp_min(1e-3)[:, None, None]
    return out * w


def standard_logmel(frontend: LogMel, wav: torch.Tensor,
                    lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, N]`` waveforms -> per-clip standardised log-mel ``[B, M, F]`` and valid frames ``[B]``.

    Args:
        frontend: the log-mel front-end.
        wav: waveforms ``[B, N]``.
        lengths: valid samples per row ``[B]`` (None: all).
    """
    logmel = frontend(wav)
    if lengths is None:
        frames = torch.full((wav.shape[0],), logmel.shape[-1], device=wav.device)
    else:
        frames = frontend.num_frames(lengths.to(wav.device)).clamp_max(logmel.shape[-1])
    return normalise_logmel(logmel, frames), frames
