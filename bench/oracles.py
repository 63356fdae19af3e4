"""Oracle baselines that use the true target: upper references for a separator.

- :func:`ideal_ratio_mask`: the ideal ratio mask in the STFT domain, a physical
  reference (what a perfect time-frequency mask could do).
- :func:`codec_round_trip`: ``decode(encode(x))`` through the separator's own codec,
  the latent-space ceiling (a latent separator cannot beat its codec on the target).
"""

from __future__ import annotations

import torch

from promptsep.audio import resample

EPS = 1e-10


def ideal_ratio_mask(
    mixture: torch.Tensor, target: torch.Tensor, n_fft: int = 1024, hop: int = 256, beta: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ideal ratio mask ``M = (|S|^2 / (|S|^2 + |R|^2))^beta`` applied to the mixture STFT.

    Args:
        mixture: ``[C, N]`` (or ``[N]``).
        target: same shape; the residual is ``mixture - target``.
        n_fft / hop: STFT size and hop (Hann window).
        beta: mask exponent (0.5: the usual IRM, 1: a Wiener-like mask).

    Returns:
        ``(estimate, residual)`` both shaped like ``mixture``; the residual uses the
        complementary mask ``1 - M``, so ``estimate + residual`` reconstructs the mixture.
    """
    shape = mixture.shape
    mix = mixture.reshape(-1, shape[-1]).double()
    tgt = target.reshape(-1, shape[-1]).double()
    n = shape[-1]
    win = torch.hann_window(n_fft, dtype=torch.float64)
    kw = {"n_fft": n_fft, "hop_length": hop, "window": win, "return_complex": True}
    x = torch.stft(mix, **kw)
    s = torch.stft(tgt, **kw).abs().pow(2)
    r = torch.stft(mix - tgt, **kw).abs().pow(2)
    mask = (s / (s + r + EPS)).pow(beta)
    est = torch.istft(x * mask, n_fft=n_fft, hop_length=hop, window=win, length=n)
    res = torch.istft(x * (1 - mask), n_fft=n_fft, hop_length=hop, window=win, length=n)
    return est.float().reshape(shape), res.float().reshape(shape)


@torch.no_grad()
def codec_round_trip(model, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``decode(encode(wav))`` through a separation model's codec, at the input rate and length.

    Args:
        model: a :class:`separation.model.SeparationModel` (its ``encode_audio`` /
            ``decode_latents`` are used, on the model's device).
        wav: ``[C, N]`` at ``sample_rate``; each channel goes through the codec.
        sample_rate: rate of ``wav``.

    Returns:
        ``[C, N]`` float32 on the CPU.
    """
    device = next(model.parameters()).device
    sr_model = int(model.sample_rate)
    x = resample(wav.float(), sample_rate, sr_model)  # [C, M]
    m = x.shape[-1]
    z = model.encode_audio(x[:, None].to(device))  # [C, T, D]
    y = model.decode_latents(z, m)[:, 0].float().cpu()  # [C, M]
    y = resample(y, sr_model, sample_rate)
    n = wav.shape[-1]
    if y.shape[-1] >= n:
        return y[..., :n]
    return torch.nn.functional.pad(y, (0, n - y.shape[-1]))


__all__ = ["codec_round_trip", "ideal_ratio_mask"]
