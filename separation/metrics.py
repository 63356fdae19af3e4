"""Reference-based separation metrics shared by training, the judge and the benchmarks.

All functions take ``[..., N]`` tensors (any leading batch dims, broadcast against each other)
and return ``[...]``. SI-SDR, SNR and SDR are torchmetrics' implementations.
"""

from __future__ import annotations

import torch

EPS = 1e-8


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, zero_mean: bool = True) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB.

    Args:
        estimate: ``[..., N]``.
        reference: ``[..., N]``.
        zero_mean: remove the mean of both first (the usual definition).

    Returns:
        ``[...]`` SI-SDR in dB. A silent reference gives -inf-like large negative values;
        callers that can meet silent references should handle them (see :func:`energy_ratio_db`).
    """
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    return scale_invariant_signal_distortion_ratio(*torch.broadcast_tensors(estimate, reference), zero_mean=zero_mean)


def snr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Plain signal-to-noise ratio in dB, ``[..., N] -> [...]``."""
    from torchmetrics.functional.audio import signal_noise_ratio

    return signal_noise_ratio(*torch.broadcast_tensors(estimate, reference))


def sdr(estimate: torch.Tensor, reference: torch.Tensor, filter_length: int = 512) -> torch.Tensor:
    """BSS-eval SDR (distortion filter of ``filter_length`` taps) via torchmetrics, in dB."""
    from torchmetrics.functional.audio import signal_distortion_ratio

    return signal_distortion_ratio(estimate.double(), reference.double(), filter_length=filter_length).float()


def energy_ratio_db(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Energy of ``estimate`` relative to ``reference`` in dB (e.g. output vs mixture for absent targets)."""
    return 10 * torch.log10((estimate.pow(2).sum(-1) + EPS) / (reference.pow(2).sum(-1) + EPS))


def multi_resolution_stft_distance(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    fft_sizes: tuple[int, ...] = (512, 1024, 2048),
) -> torch.Tensor:
    """Multi-resolution STFT distance: spectral convergence + log-magnitude L1, averaged.

    Args:
        estimate: ``[B, N]`` or ``[N]``.
        reference: same shape.

    Returns:
        ``[B]`` (or scalar) distance; 0 for identical signals.
    """
    squeeze = estimate.dim() == 1
    est = estimate.reshape(-1, estimate.shape[-1])
    ref = reference.reshape(-1, reference.shape[-1])
    total = torch.zeros(est.shape[0], device=est.device)
    for n_fft in fft_sizes:
        win = torch.hann_window(n_fft, device=est.device)
        kw = {"n_fft": n_fft, "hop_length": n_fft // 4, "window": win, "return_complex": True}
        e = torch.stft(est, **kw).abs()
        r = torch.stft(ref, **kw).abs()
        sc = torch.linalg.norm((r - e).flatten(1), dim=1) / (torch.linalg.norm(r.flatten(1), dim=1) + EPS)
        mag = (torch.log(e + 1e-5) - torch.log(r + 1e-5)).abs().flatten(1).mean(1)
        total = total + sc + mag
    out = total / len(fft_sizes)
    return out[0] if squeeze else out
