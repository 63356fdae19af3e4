"""Reference-based training targets of the judge (precision, recall, faithfulness, overall).

Each axis is ONE function of the references (the true target stem and the residual,
``mixture = target + residual``) and the estimate, mapped to the judge's 1..5 scale
(5 = best). They follow BSS-eval's decomposition, computed on short frames so that
time-varying gains (a gated target, a leak that comes and goes) are measured where
they happen:

For every frame ``f`` (:data:`FRAME_S` seconds, non-overlapping) the estimate is
projected on the span of the target and the residual of that frame::

    e_f = a_f * s_f + b_f * i_f + art_f          (least squares, lightly regularised)

- ``a_f * s_f`` is the target kept, ``b_f * i_f`` the interference leaked,
  ``art_f`` everything the references do not explain (artefacts: distortion,
  filtering, added noise, unrelated sounds).

The four axes (``u`` is the axis on a 0..1 scale, the score is ``1 + 4 u``):

- :func:`recall_target`: share of the target's energy the estimate retains,
  ``rho = sum_f clip(a_f, 0, 1) ||s_f||^2 / sum_f ||s_f||^2``; ``u = rho``. A silent
  estimate or a wrong source retains nothing (1), a gated target loses the gated
  share, a uniformly attenuated target keeps its gain (-6 dB -> 0.5 -> 3).
- :func:`precision_target`: SIR-like, ``SIR = 10 log10(max(E_t, floor) / E_i)`` with
  ``E_t = sum ||a_f s_f||^2``, ``E_i = sum ||b_f i_f||^2`` and ``floor`` = the target's
  energy 30 dB down (so a near-silent estimate, which leaks nothing, is not punished for
  keeping little target: that is recall's business); ``u = clip(SIR / 30 dB, 0, 1)``.
  The unprocessed mixture at 0 dB target-to-interference gets 1; a leak 10 dB below the
  target 2.3; 20 dB below 3.7; 30 dB below 5.
- :func:`faithfulness_target`: mean of two artefact measures on a 0..1 scale: SAR-like
  ``SAR = 10 log10(max(E_t + E_i, floor) / E_art)`` mapped by ``clip(SAR / 30 dB, 0, 1)``
  and the multi-resolution STFT distance ``d`` between the estimate and its artefact-free
  part ``sum_f (a_f s_f + b_f i_f)`` (:func:`separation.metrics.multi_resolution_stft_distance`)
  mapped by ``exp(-d / 1.5)``. Low-pass filtering, clipping, added noise and codec damage
  lower it; leaked interference does not (it is explained by the residual).
- :func:`perceptual_target` (no axis of its own; it enters the overall): the log-mel
  distance between the estimate and the reference target, ``d = mean |log10(M_est + floor)
  - log10(M_ref + floor)|`` over the bins of a torchaudio ``MelSpectrogram`` (:data:`MEL_N_FFT`
  = 1024-point STFT, hop 256, :data:`MEL_BANDS` = 64 bands, power 2), where ``floor`` is the
  mixture's mean mel power :data:`FLOOR_DB` (30 dB) down (so what is inaudibly quiet beside the
  mixture does not count); ``u_mel = exp(-d / MEL_SCALE)`` with :data:`MEL_SCALE` = 0.5 (one
  decade of average log-mel error gives ``e^-2 = 0.14``). For an absent target the reference is
  silence: ``M_ref = 0``, so silence gets ``d = 0`` and an estimate ``L`` dB above the floor
  ``d ~ L / 10``.
- :func:`overall_target`: ``u = sqrt(u_p * u_r * u_f) ** (1 - w) * u_mel ** w`` with
  :data:`PERCEPTUAL_WEIGHT` ``w = 0.3``: a zero on any axis makes the overall 1, a perfect
  estimate is 5; precision and recall failures (the mixture, silence, the wrong source) bring
  it to 1, and of two estimates with the same SI-SDR the one whose spectrum is further from
  the target's (e.g. its error in bands where the target is quiet) gets the lower overall.
  (Recipe version 2; version 1 had no perceptual term.)

**Recipe 3** (``recipe=3``; :data:`RECIPE_VERSION` is the default) keeps every formula above but maps SIR and
SAR linearly from -20 dB (instead of 0 dB) to 30 dB (:data:`RECIPE_RANGES_DB`). Under recipe 2 every estimate whose SIR is at or below 0 dB (the
unprocessed mixture at 0 dB or less, a separation that leaks as much as it keeps) got precision 1
and so overall 1, the grade of silence: the grades tied exactly where a ranker must decide (is
this output worse than the mixture? is it better than nothing?). With the wider ranges the only
present-target estimates graded overall 1 are those that keep none of the target (recall 0:
silence, a wrong source), and below 0 dB SIR the grade still falls with the leak. Measured with
``judge.evaluate --bars-...`` (the "grades" column): see docs/JUDGE.md.

Absent targets (the reference target is silent, so the right estimate is silence):
recall is 5 for every estimate (there is nothing to miss); precision is the estimate's
energy relative to the mixture: 0 dB (the mixture) -> 1, -30 dB or quieter -> 5, linear in
dB between; faithfulness uses the same formula as above with the residual alone; the
overall the same combination (the perceptual term against silence). Silence therefore gets 5
on every axis, the unprocessed mixture overall 1, and any other estimate an overall that falls
with its energy: for an absent prompt the grade measures how quiet the output is.

A silent (all-zero) estimate of a present target: recall 1, precision 5, faithfulness 5,
overall 1. Whether the prompted sound is in the mixture at all is a separate output of the
judge (its presence head, trained on ``target_present``), not one of these grades.
"""

from __future__ import annotations

import math

import torch

from separation.metrics import multi_resolution_stft_distance

#: Frame length of the projections, in seconds.
FRAME_S = 0.1
#: Range of SIR / SAR mapped linearly onto 1..5, in dB.
SIR_RANGE_DB = (0.0, 30.0)
SAR_RANGE_DB = (0.0, 30.0)
#: The (SIR, SAR) ranges of each grading recipe :func:`reference_targets` knows; recipe 3 maps
#: from -20 dB so grades do not tie at 1 below 0 dB SIR / SAR.
RECIPE_RANGES_DB = {2: (SIR_RANGE_DB, SAR_RANGE_DB), 3: ((-20.0, 30.0), (-20.0, 30.0))}
RECIPES = tuple(RECIPE_RANGES_DB)
#: Estimates whose leaked (target present) or total (target absent) energy is this far
#: below the reference count as clean.
FLOOR_DB = 30.0
#: Scale of the multi-resolution STFT distance in ``exp(-d / scale)``.
MRSTFT_SCALE = 1.5
#: A reference whose energy is below this share of the mixture energy counts as absent.
ABSENT_REL = 1e-6
EPS = 1e-10
#: Log-mel distance of the perceptual term: STFT size, bands, scale in ``exp(-d / scale)``, and its
#: weight in the overall grade.
MEL_N_FFT = 1024
MEL_BANDS = 64
MEL_SCALE = 0.5
PERCEPTUAL_WEIGHT = 0.3
#: Version of the grading recipe used by default (part of the judge's feature-cache fingerprint).
RECIPE_VERSION = 2

AXES = ("precision", "recall", "faithfulness", "overall")


def to_score(u: torch.Tensor) -> torch.Tensor:
    """Map a 0..1 axis value to the 1..5 judge scale."""
    return 1.0 + 4.0 * u.clamp(0.0, 1.0)


def _frames(x: torch.Tensor, frame: int) -> torch.Tensor:
    """``[..., N] -> [..., F, frame]`` (zero-padded at the end)."""
    n = x.shape[-1]
    pad = (-n) % frame
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(*x.shape[:-1], -1, frame)


def decompose(estimate: torch.Tensor, target: torch.Tensor, residual: torch.Tensor,
              sample_rate: int) -> dict[str, torch.Tensor]:
    """Frame-wise projection of the estimate on the target and the residual.

    Args:
        estimate: ``[..., N]``.
        target: ``[..., N]`` the reference target stem.
        residual: ``[..., N]`` everything else in the mixture (``mixture - target``).
        sample_rate: in Hz (sets the :data:`FRAME_S` frame length).

    Returns:
        dict of ``a``, ``b`` (coefficients ``[..., F]``), ``s_energy`` (``[..., F]`` target
        energy per frame), ``e_target``, ``e_interf``, ``e_artif`` and ``e_est`` (energies
        ``[...]``) and ``explained`` (``[..., N]``, the artefact-free part of the estimate).
    """
    est, s, i = (x.double() for x in (estimate, target, residual))
    n = est.shape[-1]
    frame = max(16, int(round(FRAME_S * sample_rate)))
    ef, sf, inf = _frames(est, frame), _frames(s, frame), _frames(i, frame)
    ss = (sf * sf).sum(-1)
    ii = (inf * inf).sum(-1)
    si = (sf * inf).sum(-1)
    es = (ef * sf).sum(-1)
    ei = (ef * inf).sum(-1)
    lam = 1e-6 * (ss + ii) + EPS
    g11, g22, g12 = ss + lam, ii + lam, si
    det = g11 * g22 - g12 * g12
    a = (g22 * es - g12 * ei) / det
    b = (g11 * ei - g12 * es) / det
    tgt = a.unsqueeze(-1) * sf
    itf = b.unsqueeze(-1) * inf
    art = ef - tgt - itf
    explained = (tgt + itf).flatten(-2)[..., :n]
    return {
        "a": a, "b": b, "s_energy": ss,
        "e_target": tgt.pow(2).sum((-1, -2)), "e_interf": itf.pow(2).sum((-1, -2)),
        "e_artif": art.pow(2).sum((-1, -2)), "e_est": ef.pow(2).sum((-1, -2)),
        "explained": explained,
    }


def _present(target: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """``[...]`` bool: the reference target carries energy (is not absent)."""
    et = target.double().pow(2).sum(-1)
    em = mixture.double().pow(2).sum(-1)
    return et > ABSENT_REL * em + EPS


def _lin(db: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return ((db - lo) / (hi - lo)).clamp(0.0, 1.0)


def recall_target(estimate: torch.Tensor, target: torch.Tensor, residual: torch.Tensor,
                  sample_rate: int, parts: dict | None = None) -> torch.Tensor:
    """Recall on 1..5: the share of the target's energy retained by the estimate.

    ``rho = sum_f clip(a_f, 0, 1) ||s_f||^2 / sum_f ||s_f||^2`` with ``a_f`` the frame-wise
    projection coefficient of the estimate on the target; score ``1 + 4 rho``. Absent target: 5.

    Args:
        estimate, target, residual: ``[..., N]``.
        sample_rate: Hz.
        parts: a precomputed :func:`decompose` result (optional).

    Returns:
        ``[...]`` float32 in 1..5.
    """
    p = parts or decompose(estimate, target, residual, sample_rate)
    rho = (p["a"].clamp(0.0, 1.0) * p["s_energy"]).sum(-1) / (p["s_energy"].sum(-1) + EPS)
    present = _present(target, target + residual)
    u = torch.where(present, rho, torch.ones_like(rho))
    return to_score(u).float()


def precision_target(estimate: torch.Tensor, target: torch.Tensor, residual: torch.Tensor,
                     sample_rate: int, parts: dict | None = None,
                     sir_range_db: tuple[float, float] = SIR_RANGE_DB) -> torch.Tensor:
    """Precision on 1..5: how little of the mixture's non-target sound leaked into the estimate.

    Target present: ``SIR = 10 log10(max(E_t, E_s 10^(-3)) / E_i)`` (frame-wise projection;
    ``E_s`` the reference target energy), mapped linearly over ``sir_range_db`` (0 dB -> 1 and
    30 dB -> 5 by default; -20 dB -> 1 in recipe 3).
    Target absent: the estimate's energy relative to the mixture, 0 dB -> 1, -30 dB -> 5.

    Returns:
        ``[...]`` float32 in 1..5.
    """
    p = parts or decompose(estimate, target, residual, sample_rate)
    es = target.double().pow(2).sum(-1)
    floor = es * 10 ** (-FLOOR_DB / 10)
    sir = 10 * torch.log10((torch.maximum(p["e_target"], floor) + EPS) / (p["e_interf"] + EPS))
    u_present = _lin(sir, *sir_range_db)
    mix = target.double() + residual.double()
    rel = 10 * torch.log10((p["e_est"] + EPS) / (mix.pow(2).sum(-1) + EPS))
    u_absent = _lin(-rel, 0.0, FLOOR_DB)
    u = torch.where(_present(target, mix), u_present, u_absent)
    return to_score(u).float()


def faithfulness_target(estimate: torch.Tensor, target: torch.Tensor, residual: torch.Tensor,
                        sample_rate: int, parts: dict | None = None,
                        sar_range_db: tuple[float, float] = SAR_RANGE_DB) -> torch.Tensor:
    """Faithfulness on 1..5: absence of artefacts (distortion, filtering, noise, foreign sound).

    Mean of ``SAR`` mapped linearly over ``sar_range_db`` (0..30 dB by default, -20..30 dB in
    recipe 3) with ``SAR = 10 log10(max(E_t + E_i, floor) / E_art)``
    (``floor`` = the mixture energy 30 dB down, so a silent estimate has no artefacts) and
    ``exp(-d / 1.5)`` with ``d`` the multi-resolution STFT distance between the estimate and
    its artefact-free part; score ``1 + 4 u``.

    Returns:
        ``[...]`` float32 in 1..5.
    """
    p = parts or decompose(estimate, target, residual, sample_rate)
    mix = target.double() + residual.double()
    floor = mix.pow(2).sum(-1) * 10 ** (-FLOOR_DB / 10)
    sar = 10 * torch.log10((torch.maximum(p["e_target"] + p["e_interf"], floor) + EPS) / (p["e_artif"] + EPS))
    u_sar = _lin(sar, *sar_range_db)
    shape = estimate.shape[:-1]
    est = estimate.reshape(-1, estimate.shape[-1]).float()
    expl = p["explained"].reshape(-1, estimate.shape[-1]).float()
    n = est.shape[-1]
    sizes = tuple(s for s in (512, 1024, 2048) if s <= n) or (max(16, 2 ** int(math.log2(max(n, 16)))),)
    d = multi_resolution_stft_distance(est, expl, fft_sizes=sizes).reshape(shape).double()
    u_stft = torch.exp(-d / MRSTFT_SCALE)
    return to_score(0.5 * (u_sar + u_stft)).float()


_MEL_CACHE: dict[tuple[int, int], torch.nn.Module] = {}


def _mel(sample_rate: int, n: int) -> torch.nn.Module:
    import torchaudio

    n_fft = min(MEL_N_FFT, 2 ** int(math.log2(max(n, 64))))
    key = (int(sample_rate), n_fft)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = torchaudio.transforms.MelSpectrogram(
            sample_rate=int(sample_rate), n_fft=n_fft, hop_length=n_fft // 4, n_mels=min(MEL_BANDS, n_fft // 8),
            power=2.0, norm="slaney", mel_scale="slaney")
    return _MEL_CACHE[key]


def perceptual_target(estimate: torch.Tensor, target: torch.Tensor, residual: torch.Tensor,
                      sample_rate: int) -> torch.Tensor:
    """The perceptual term on 0..1: ``exp(-d / MEL_SCALE)`` of the log-mel distance ``d`` between
    the estimate and the reference target (silence when the target is absent), with a floor
    :data:`FLOOR_DB` below the mixture's mean mel power (see the module docstring).

    Args:
        estimate, target, residual: ``[..., N]``.
        sample_rate: Hz.

    Returns:
        ``[...]`` float64 in 0..1 (1: the same mel spectrogram as the reference).
    """
    shape = estimate.shape[:-1]
    n = estimate.shape[-1]
    mel = _mel(sample_rate, n)
    est, tgt = (x.reshape(-1, n).float() for x in (estimate, target))
    mix = (target.double() + residual.double()).reshape(-1, n).float()
    m_est, m_tgt, m_mix = (mel(x).double() for x in (est, tgt, mix))  # [R, bands, frames]
    floor = m_mix.mean((-1, -2), keepdim=True) * 10 ** (-FLOOR_DB / 10) + EPS
    d = (torch.log10(m_est + floor) - torch.log10(m_tgt + floor)).abs().mean((-1, -2))
    return torch.exp(-d / MEL_SCALE).reshape(shape)


def overall_target(precision: torch.Tensor, recall: torch.Tensor, faithfulness: torch.Tensor,
                   perceptual: torch.Tensor | None = None) -> torch.Tensor:
    """Overall on 1..5 from the three axes (1..5 each) and the perceptual term (0..1):
    ``1 + 4 sqrt(u_p u_r u_f) ** (1 - w) * u_mel ** w`` with ``u = (score - 1) / 4`` and
    ``w`` = :data:`PERCEPTUAL_WEIGHT`; without ``perceptual``, the recipe-1 ``1 + 4 sqrt(u_p u_r u_f)``."""
    u = [((x.double() - 1.0) / 4.0).clamp(0.0, 1.0) for x in (precision, recall, faithfulness)]
    base = torch.sqrt(u[0] * u[1] * u[2])
    if perceptual is None:
        return to_score(base).float()
    w = PERCEPTUAL_WEIGHT
    return to_score(base ** (1 - w) * perceptual.double().clamp(0.0, 1.0) ** w).float()


def reference_targets(estimate: torch.Tensor, target: torch.Tensor, residual: torch.Tensor,
                      sample_rate: int, recipe: int = RECIPE_VERSION) -> torch.Tensor:
    """All four targets: ``[..., N]`` signals -> ``[..., 4]`` (precision, recall, faithfulness, overall) in 1..5
    (the overall with the perceptual term, :func:`overall_target`).

    Args:
        estimate: the candidate stem ``[..., N]``.
        target: the reference target ``[..., N]`` (all zeros when the target is absent).
        residual: ``mixture - target``, ``[..., N]``.
        sample_rate: Hz.
        recipe: grading recipe, 2 or 3 (see the module docstring).

    Raises:
        ValueError: mismatched shapes or an unknown recipe.
    """
    if not (estimate.shape == target.shape == residual.shape):
        raise ValueError(f"shape mismatch: estimate {tuple(estimate.shape)}, target {tuple(target.shape)}, "
                         f"residual {tuple(residual.shape)}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown grading recipe {recipe!r}; use one of {RECIPES}")
    sir_range, sar_range = RECIPE_RANGES_DB[recipe]
    parts = decompose(estimate, target, residual, sample_rate)
    p = precision_target(estimate, target, residual, sample_rate, parts, sir_range)
    r = recall_target(estimate, target, residual, sample_rate, parts)
    f = faithfulness_target(estimate, target, residual, sample_rate, parts, sar_range)
    mel = perceptual_target(estimate, target, residual, sample_rate)
    return torch.stack([p, r, f, overall_target(p, r, f, mel)], dim=-1)
