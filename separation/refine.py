"""Mixture-consistent refinement of generated stems.

The generative stems are decoded from latents, so their phase and fine detail are only as good
as the codec. :func:`wiener_refine` keeps what the separator decided (which time-frequency
energy belongs to the target) and takes the signal itself from the mixture: a soft ratio mask
built from the generated target and residual magnitudes is applied to the mixture's STFT, and the
residual is the mixture minus the refined target, so ``target + residual == mixture`` exactly.
"""

from __future__ import annotations

import torch

REFINE_MODES = ("wiener", "none")


def wiener_refine(
    mixture: torch.Tensor,
    target: torch.Tensor,
    residual: torch.Tensor,
    n_fft: int = 1024,
    hop_length: int = 256,
    power: float = 2.0,
    eps: float = 1e-8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-mask the mixture with the generated stems' magnitudes.

    Args:
        mixture: ``[..., N]`` waveform.
        target: generated target ``[..., N]`` (same shape as ``mixture``).
        residual: generated residual ``[..., N]``.
        n_fft: STFT size (Hann window).
        hop_length: STFT hop.
        power: mask exponent (2 = Wiener-like, 1 = magnitude ratio).
        eps: keeps silent bins finite (they go to the residual).

    Returns:
        ``(target, residual)`` shaped like ``mixture``, with ``target + residual == mixture``.
    """
    if not (mixture.shape == target.shape == residual.shape):
        raise ValueError(f"shapes differ: mixture {tuple(mixture.shape)}, target {tuple(target.shape)}, "
                         f"residual {tuple(residual.shape)}")
    shape = mixture.shape
    n = shape[-1]
    flat = torch.stack([mixture, target, residual]).reshape(3 * (mixture.numel() // n), n).float()
    window = torch.hann_window(n_fft, device=flat.device)
    pad = max(0, n_fft - n)
    spec = torch.stft(torch.nn.functional.pad(flat, (0, pad)), n_fft, hop_length, window=window,
                      return_complex=True)
    spec = spec.view(3, -1, *spec.shape[-2:])
    mag_t, mag_r = spec[1].abs().pow(power), spec[2].abs().pow(power)
    mask = mag_t / (mag_t + mag_r + eps)
    refined = torch.istft(mask * spec[0], n_fft, hop_length, window=window, length=n + pad)[..., :n]
    refined = refined.reshape(shape).to(mixture.dtype)
    return refined, mixture - refined
