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
    block_samples: int = 320_000,
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
        block_samples: longer inputs are refined in blocks of about this many samples, each
            with ``2 * n_fft`` samples of context on both sides, so memory stays flat in length
            (the mask is local, so the blocks reproduce the whole-signal result).

    Returns:
        ``(target, residual)`` shaped like ``mixture``, with ``target + residual == mixture``.
    """
    if not (mixture.shape == target.shape == residual.shape):
        raise ValueError(f"shapes differ: mixture {tuple(mixture.shape)}, target {tuple(target.shape)}, "
                         f"residual {tuple(residual.shape)}")
    n = mixture.shape[-1]
    overlap = 2 * n_fft
    if n > block_samples > 2 * overlap:
        return _blockwise(mixture, target, residual, n_fft, hop_length, power, eps, block_samples, overlap)
    shape = mixture.shape
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


def _blockwise(mixture, target, residual, n_fft, hop_length, power, eps, block, margin):
    """Refine ``[s, s + step)`` from the context ``[s - margin, s + step + margin)``.

    Block starts and margins are multiples of the hop, so the STFT frames line up with the
    whole-signal frames and the kept samples match the whole-signal result.
    """
    n = mixture.shape[-1]
    step = max(hop_length, block // hop_length * hop_length)
    margin = -(-margin // hop_length) * hop_length
    out = torch.empty_like(mixture)
    for s in range(0, n, step):
        lo, hi = max(0, s - margin), min(n, s + step + margin)
        piece, _ = wiener_refine(mixture[..., lo:hi], target[..., lo:hi], residual[..., lo:hi], n_fft,
                                 hop_length, power, eps, block_samples=hi - lo + 1)
        e = min(n, s + step)
        out[..., s:e] = piece[..., s - lo : e - lo]
    return out, mixture - out
