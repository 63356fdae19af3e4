"""Flow matching: the objective, the timestep samplers, guidance and the ODE samplers.

Convention: ``t = 0`` is noise and ``t = 1`` is data; ``x_t = (1 - t) x_0 + t x_1``; the
network predicts the velocity ``x_1 - x_0``. Everything about the objective and the
sampling lives here, out of the backbone.

The source distribution ``x_0`` is either standard Gaussian noise (``prior="noise"``, SAM
Audio's choice) or a Gaussian centred on the mixture split evenly between the two stems
(``prior="mixture"``: ``x_0 = [z_mix / 2 | z_mix / 2] + prior_std * rms(z_mix) * eps``). The second makes
the flow a short transport from the mixture to its stems: an untrained or weak model returns
the mixture (0 dB SI-SDRi) instead of noise, which is what small models trained on a CPU
budget need (the codec latents are linear in the audio, so the split is exact in latent space).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: Prompt kinds that can be dropped for guidance.
PROMPT_KINDS = ("text", "span", "video")

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class FlowConfig:
    """Flow-matching objective and prompt dropout.

    Attributes:
        timestep_sampler: ``"logit_normal"`` or ``"uniform"``.
        logit_mean: mean of the logit-normal sampler.
        logit_std: standard deviation of the logit-normal sampler.
        p_drop_text: probability to replace the text prompt by the learned null embedding.
        p_drop_span: probability to replace the span anchors by null anchors.
        p_drop_video: probability to replace the video features by the learned null embedding.
        prior: source distribution ``"noise"`` (standard Gaussian) or ``"mixture"`` (Gaussian
            centred on the evenly split mixture latents), see :func:`prior_sample`.
        prior_std: standard deviation of the source distribution around its centre (for
            ``"mixture"`` relative to each item's mixture-latent RMS).
        prediction: what the backbone's ``2C`` outputs mean. ``"velocity"``: the velocity
            itself (SAM Audio). ``"mask"``: per latent frame and channel, logits of a soft
            split of the mixture latents between target and residual (:func:`mask_split`);
            the estimate ``x1_hat`` gives the velocity ``(x1_hat - x_t) / (1 - t)`` and the
            loss is the error of ``x1_hat`` (:func:`velocity_from_data`, :func:`data_loss`).
        data_loss: the loss of a data prediction. ``"relative"``: squared error of the raw
            (unnormalised) latents over each item's raw mixture-latent energy, an SNR-like loss
            that weighs channels by their energy (the raw latents of the linear codec path
            are an orthonormal frame transform, so this is the waveform error of that path);
            ``"normalised"``: plain MSE of the normalised latents (every channel equal).
        t0_prob: share of training times set to exactly 0. With a mixture prior the state at
            ``t > 0`` already holds part of the answer, which the backbone learns to read off
            long before it learns the split itself; the first sampler step (``t = 0``) is
            where the split is decided, and this trains it directly.
        mask_range: ``[low, high]`` of the target mask of ``prediction="mask"``: the target is
            ``m * mixture`` with ``m = low + (high - low) * sigmoid(l_t - l_r)`` and the residual
            is ``mixture - target`` (so the stems always sum to the mixture). ``[0, 1]`` is the
            soft split of the first release; a real transform's coefficients need masks outside
            it where the sources' signs differ (``[-1, 2]`` reaches much higher ideal-mask SI-SDR).
        wave_loss_weight: weight of a loss on the deployed output, added by the model: the
            thresholded SNR of the refined target waveform (:func:`thresholded_snr_loss`); 0 off.
        wave_loss_floor_db: that loss's soft floor in dB under the mixture (it stops rewarding
            errors smaller than this, and keeps silent targets finite).
    """

    timestep_sampler: str = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    p_drop_text: float = 0.1
    p_drop_span: float = 0.1
    p_drop_video: float = 0.1
    prior: str = "noise"
    prior_std: float = 1.0
    prediction: str = "velocity"
    data_loss: str = "relative"
    t0_prob: float = 0.0
    mask_range: tuple[float, float] = (0.0, 1.0)
    wave_loss_weight: float = 0.0
    wave_loss_floor_db: float = 30.0

    def __post_init__(self) -> None:
        self.mask_range = tuple(float(v) for v in self.mask_range)
        if len(self.mask_range) != 2 or not self.mask_range[0] < self.mask_range[1]:
            raise ValueError(f"flow mask_range must be [low, high] with low < high, got {self.mask_range}")
        if self.wave_loss_weight < 0:
            raise ValueError(f"flow wave_loss_weight must be >= 0, got {self.wave_loss_weight}")
        if not 0.0 <= self.t0_prob < 1.0:
            raise ValueError(f"flow t0_prob must be in [0, 1), got {self.t0_prob}")
        if self.data_loss not in DATA_LOSSES:
            raise ValueError(f"unknown flow data_loss {self.data_loss!r}; use one of {DATA_LOSSES}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown flow prediction {self.prediction!r}; use one of {PREDICTIONS}")
        if self.prior not in PRIORS:
            raise ValueError(f"unknown flow prior {self.prior!r}; use one of {PRIORS}")
        if not self.prior_std > 0:
            raise ValueError(f"flow prior_std must be > 0, got {self.prior_std}")


#: Source distributions of the flow (see the module docstring).
PRIORS = ("noise", "mixture")
#: Meanings of the backbone output (see :class:`FlowConfig`).
PREDICTIONS = ("velocity", "mask")
#: Losses of a data prediction (see :class:`FlowConfig`).
DATA_LOSSES = ("relative", "normalised")
#: Smallest ``1 - t`` the data-to-velocity conversion divides by.
MIN_REMAINING_T = 1e-3
#: Smallest per-item latent RMS the mixture prior scales its noise by.
PRIOR_RMS_FLOOR = 1e-2


def prior_sample(cfg: FlowConfig, z_mix: torch.Tensor, noise: torch.Tensor,
                 rms: torch.Tensor | None = None) -> torch.Tensor:
    """Map standard-normal ``noise`` to a draw ``x_0`` of the configured source distribution.

    Args:
        cfg: the flow config (``prior``, ``prior_std``).
        z_mix: mixture latents ``[B, T, C]``.
        noise: standard-normal ``[B, T, 2C]``.
        rms: ``[B, 1, 1]`` latent RMS of each whole item (see :func:`latent_rms`), for ``z_mix``
            that is a piece of a longer sequence; None: computed from ``z_mix``.

    Returns:
        ``x_0`` ``[B, T, 2C]``: ``prior_std * noise`` for ``"noise"``, and
        ``[z_mix / 2 | z_mix / 2] + prior_std * rms(z_mix) * noise`` for ``"mixture"``, with
        ``rms`` the root mean square of each item's mixture latents (at least
        :data:`PRIOR_RMS_FLOOR`), so the noise sits at a fixed level below the mixture.
    """
    if noise.shape[-1] != 2 * z_mix.shape[-1] or noise.shape[:-1] != z_mix.shape[:-1]:
        raise ValueError(f"noise {tuple(noise.shape)} does not fit mixture latents {tuple(z_mix.shape)}")
    if cfg.prior == "noise":
        return cfg.prior_std * noise
    zm = z_mix.to(noise.dtype)
    # the noise is relative to each item's latent RMS: mixture levels span tens of dB, and a fixed
    # noise level would drown quiet mixtures and vanish under loud ones
    rms = latent_rms(zm) if rms is None else rms.to(noise.dtype)
    half = 0.5 * zm
    return torch.cat([half, half], dim=-1) + cfg.prior_std * rms * noise


def latent_rms(z_mix: torch.Tensor) -> torch.Tensor:
    """Per-item latent RMS ``[B, 1, 1]`` of the mixture prior (at least :data:`PRIOR_RMS_FLOOR`).

    Args:
        z_mix: mixture latents ``[B, T, C]``.
    """
    return z_mix.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(PRIOR_RMS_FLOOR)


def rms_from_sums(sum_sq: torch.Tensor, count: int) -> torch.Tensor:
    """:func:`latent_rms` from statistics accumulated over a longer sequence (streaming): the sum of
    squares ``sum_sq [B]`` over ``count`` values per item; returns ``[B, 1, 1]`` float32."""
    ms = (sum_sq / max(1, int(count))).view(-1, 1, 1).float()
    return ms.sqrt().clamp_min(PRIOR_RMS_FLOOR)


def mask_split(logits: torch.Tensor, z_mix: torch.Tensor, offset: torch.Tensor | float = 0.0,
               mask_range: Sequence[float] = (0.0, 1.0)) -> torch.Tensor:
    """Split the mixture latents with a mask: the data estimate of ``prediction="mask"``.

    Args:
        logits: backbone output ``[B, T, 2C]``: target and residual logits per frame and channel;
            the target mask is ``m = low + (high - low) * sigmoid(l_t - l_r)`` (for ``[0, 1]``: the
            softmax over the pair).
        z_mix: normalised mixture latents ``[B, T, C]``.
        offset: ``latent_mean / latent_std`` ``[C]`` of the codec: the masks act on the raw
            (unnormalised) latents, which are linear in the audio.
        mask_range: ``(low, high)`` of the target mask.

    Returns:
        ``x1_hat = [target | residual]`` ``[B, T, 2C]`` in normalised latent units; the residual's
        raw latents are the mixture's minus the target's, so the stems sum to the mixture exactly.
        Zero logits give a mask at the middle of the range (half the mixture each for ``[0, 1]``
        and ``[-1, 2]``).
    """
    c = z_mix.shape[-1]
    if logits.shape[-1] != 2 * c or logits.shape[:-1] != z_mix.shape[:-1]:
        raise ValueError(f"mask logits {tuple(logits.shape)} do not fit mixture latents {tuple(z_mix.shape)}")
    low, high = (float(v) for v in mask_range)
    m = low + (high - low) * torch.sigmoid(logits[..., :c] - logits[..., c:])
    raw = z_mix + offset
    target = m * raw
    off = torch.as_tensor(offset, dtype=z_mix.dtype, device=z_mix.device)
    return torch.cat([target - off, raw - target - off], dim=-1)


def thresholded_snr_loss(estimate: torch.Tensor, reference: torch.Tensor, mixture: torch.Tensor,
                         floor_db: float = 30.0) -> torch.Tensor:
    """Negative SNR with a soft floor (as in MixIT), in units of 10 dB, averaged over items.

    ``10 log10(|s - s_hat|^2 + tau |x|^2) - 10 log10(|x|^2)`` over 10, ``tau = 10^(-floor_db / 10)``:
    the error relative to the mixture ``x``; it is finite for a silent reference (an absent target)
    and stops rewarding errors ``floor_db`` under the mixture.

    Args:
        estimate / reference / mixture: waveforms ``[B, N]`` (or ``[B, 1, N]``).
        floor_db: the soft floor.

    Returns:
        the scalar loss (about -floor_db / 10 at best, 0 for an estimate as bad as the mixture away).
    """
    b = estimate.shape[0]
    err = (estimate - reference).reshape(b, -1).pow(2).sum(-1)
    ref = mixture.reshape(b, -1).pow(2).sum(-1).clamp_min(1e-8)
    tau = 10.0 ** (-floor_db / 10.0)
    return (torch.log10(err + tau * ref) - torch.log10(ref)).mean()


def data_loss(kind: str, x1_hat: torch.Tensor, x1: torch.Tensor, z_mix: torch.Tensor,
              latent_std: torch.Tensor, offset: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Loss of a data estimate ``x1_hat`` against ``x1`` (both ``[B, T, 2C]``, normalised latents).

    Args:
        kind: ``"relative"`` or ``"normalised"`` (see :class:`FlowConfig`).
        z_mix: normalised mixture latents ``[B, T, C]``.
        latent_std: the codec's per-channel latent std ``[C]`` (raw = normalised * std + mean).
        offset: ``latent_mean / latent_std`` ``[C]``.

    Returns:
        the scalar loss.
    """
    if kind == "normalised":
        return flow_loss(x1_hat, x1)
    if kind != "relative":
        raise ValueError(f"unknown data loss {kind!r}; use one of {DATA_LOSSES}")
    var = latent_std.to(x1.dtype).pow(2)
    err = ((x1_hat - x1).pow(2) * torch.cat([var, var])).mean(dim=(1, 2))  # raw squared error per item
    ref = ((z_mix + offset).pow(2) * var).mean(dim=(1, 2))  # raw mixture energy per item
    return (err / ref.clamp_min(1e-8)).mean()


def velocity_from_data(x1_hat: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The velocity of the straight path through ``x_t`` that ends at ``x1_hat``:
    ``(x1_hat - x_t) / (1 - t)`` (``1 - t`` at least :data:`MIN_REMAINING_T`); ``t [B]``."""
    rem = (1.0 - t).clamp_min(MIN_REMAINING_T).view(-1, *([1] * (xt.dim() - 1)))
    return (x1_hat - xt) / rem


def sample_timesteps(cfg: FlowConfig, batch: int, device=None, generator: torch.Generator | None = None):
    """Draw training times ``[B]`` in [0, 1) from the configured sampler (a share ``t0_prob`` of
    them exactly 0)."""
    if cfg.timestep_sampler == "uniform":
        t = torch.rand(batch, device=device, generator=generator)
    elif cfg.timestep_sampler == "logit_normal":
        z = torch.randn(batch, device=device, generator=generator) * cfg.logit_std + cfg.logit_mean
        t = torch.sigmoid(z)
    else:
        raise ValueError(f"unknown timestep sampler {cfg.timestep_sampler!r}; use 'uniform' or 'logit_normal'")
    if cfg.t0_prob > 0:
        t = torch.where(torch.rand(batch, device=device, generator=generator) < cfg.t0_prob, torch.zeros_like(t), t)
    return t


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - t) x0 + t x1`` with ``t [B]`` broadcast over the other dims."""
    tt = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - tt) * x0 + tt * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The regression target ``x1 - x0``."""
    return x1 - x0


def flow_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over valid frames.

    Args:
        pred: predicted velocity ``[B, T, D]``.
        target: true velocity ``[B, T, D]``.
        mask: ``[B, T]`` bool of valid frames, or None.
    """
    err = (pred - target).pow(2).mean(-1)
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def drop_mask(p: float, batch: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bool ``[B]``: True where the prompt of one kind is dropped (probability ``p``)."""
    if p <= 0:
        return torch.zeros(batch, dtype=torch.bool, device=device)
    return torch.rand(batch, device=device, generator=generator) < p


def guided_velocity(
    velocity: Callable[[torch.Tensor, torch.Tensor, frozenset], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    guidance: Mapping[str, float] | None,
) -> torch.Tensor:
    """Classifier-free guidance with one scale per prompt kind.

    ``v = v(all) + sum_k (w_k - 1) * (v(all) - v(all without k))``: with every scale at 1
    this is exactly the conditional pass (no extra evaluation is made).

    Args:
        velocity: ``velocity(x, t, dropped_kinds)`` evaluates the model with the given
            prompt kinds replaced by their null embeddings.
        x: state ``[B, T, D]``.
        t: times ``[B]``.
        guidance: scale per kind (``text``, ``span``, ``video``); missing kinds are 1.
    """
    v_cond = velocity(x, t, frozenset())
    v = v_cond
    for kind, w in (guidance or {}).items():
        if kind not in PROMPT_KINDS:
            raise ValueError(f"unknown guidance kind {kind!r}; use one of {PROMPT_KINDS}")
        if w == 1.0:
            continue
        v = v + (w - 1.0) * (v_cond - velocity(x, t, frozenset({kind})))
    return v


def euler(fn: VelocityFn, x0: torch.Tensor, nfe: int) -> torch.Tensor:
    """Integrate ``dx/dt = fn(x, t)`` from t=0 to 1 with ``nfe`` Euler steps."""
    x = x0
    ts = torch.linspace(0.0, 1.0, nfe + 1, device=x0.device)
    for i in range(nfe):
        t = ts[i].expand(x.shape[0])
        x = x + (ts[i + 1] - ts[i]) * fn(x, t)
    return x


def midpoint(fn: VelocityFn, x0: torch.Tensor, nfe: int) -> torch.Tensor:
    """Explicit midpoint rule with ``nfe`` function evaluations (``nfe // 2`` steps, at least 1)."""
    steps = max(1, nfe // 2)
    x = x0
    ts = torch.linspace(0.0, 1.0, steps + 1, device=x0.device)
    for i in range(steps):
        h = ts[i + 1] - ts[i]
        t = ts[i].expand(x.shape[0])
        x_mid = x + 0.5 * h * fn(x, t)
        x = x + h * fn(x_mid, (ts[i] + 0.5 * h).expand(x.shape[0]))
    return x


def diffusers_euler(fn: VelocityFn, x0: torch.Tensor, nfe: int) -> torch.Tensor:
    """Sample with ``diffusers.FlowMatchEulerDiscreteScheduler`` (``nfe`` steps).

    diffusers' convention is the reverse of ours (sigma 1 = noise, the model predicts
    ``noise - data``), so time and velocity are mapped: ``t = 1 - sigma``, ``v_d = -v``.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(num_inference_steps=nfe, device=x0.device)
    x = x0
    for ts in sched.timesteps:
        sigma = ts / sched.config.num_train_timesteps
        t = (1.0 - sigma).to(x.dtype).expand(x.shape[0])
        x = sched.step(-fn(x, t), ts, x).prev_sample
    return x


SAMPLERS: dict[str, Callable[[VelocityFn, torch.Tensor, int], torch.Tensor]] = {
    "euler": euler,
    "midpoint": midpoint,
    "diffusers": diffusers_euler,
}


def sample(fn: VelocityFn, x0: torch.Tensor, nfe: int = 16, method: str = "midpoint") -> torch.Tensor:
    """Integrate the flow from noise ``x0`` to data with a named sampler.

    Args:
        fn: velocity ``fn(x [B, ...], t [B]) -> [B, ...]``.
        x0: initial noise.
        nfe: number of function evaluations (midpoint uses two per step).
        method: ``euler``, ``midpoint`` or ``diffusers``.
    """
    if nfe < 1:
        raise ValueError(f"the number of function evaluations must be >= 1, got {nfe}")
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose from {sorted(SAMPLERS)}")
    return SAMPLERS[method](fn, x0, nfe)


def iter_sample_chunked(
    chunk_fn: Callable[[int, int], VelocityFn],
    x0_fn: Callable[[int, int], torch.Tensor],
    bounds: Sequence[tuple[int, int]],
    nfe: int = 16,
    method: str = "midpoint",
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Integrate a long sequence chunk by chunk along time, with pinned overlaps, handing out finished
    frames as it goes: yields ``(start, x1 [B, n, D])`` for frames
    ``[start, start + n)`` as soon as no later chunk covers them, in order.

    Only the frames of the chunk in hand are held, so memory does not grow with ``T``.

    Args:
        chunk_fn: ``chunk_fn(s, e)`` -> velocity ``fn(x [B, e-s, D], t [B])`` of that chunk.
        x0_fn: ``x0_fn(s, e)`` -> the initial state ``[B, e-s, D]`` of frames ``[s, e)`` (asked in
            increasing order of ``s``).
        bounds: ``[s, e)`` chunks, in order, covering ``[0, T)``; consecutive chunks may overlap.
            Chunk ``[s, e)`` is integrated from ``x0_fn(s, e)``; the frames it shares with chunks
            already done are *pinned*: their velocity is the constant ``x1_done - x0`` (a straight
            path to the finished result), so every sampler reproduces them exactly and the new
            frames are generated in the context of the old ones (no seam, no drift). With one
            chunk this is :func:`sample`.
        nfe / method: as in :func:`sample`.
        progress: called as ``progress(chunks_done, chunks_total)`` after each chunk.
    """
    bounds = list(bounds)
    out: torch.Tensor | None = None  # latest results of frames [o_start, o_start + out.shape[1])
    o_start = 0
    for j, (s, e) in enumerate(bounds):
        x0c = x0_fn(s, e)
        known = 0 if out is None else max(0, min(e, o_start + out.shape[1]) - s)
        known_v = out[:, s - o_start : s - o_start + known] - x0c[:, :known] if known else None
        vel = chunk_fn(s, e)

        def fn(x, t, known=known, known_v=known_v, vel=vel):
            v = vel(x, t)
            return torch.cat([known_v, v[:, known:]], dim=1) if known else v

        new = sample(fn, x0c, nfe, method)
        if out is None:
            out, o_start = new, s
        else:  # frames before s stay as they were; [s, e) is the latest result
            out = torch.cat([out[:, : s - o_start], new], dim=1)
        if progress is not None:
            progress(j + 1, len(bounds))
        final = bounds[j + 1][0] if j + 1 < len(bounds) else o_start + out.shape[1]
        if final > o_start:
            yield o_start, out[:, : final - o_start]
            out, o_start = out[:, final - o_start :], final


# ---------------------------------------------------------------- objective
def drop_prompts(cfg: FlowConfig, cond: Any, drop: Callable[[Any, str, torch.Tensor], Any], batch: int,
                 device=None, generator: torch.Generator | None = None) -> Any:
    """Prompt dropout for guidance: each prompt kind is replaced by its null embedding in a random
    share of the rows (``p_drop_text``, ``p_drop_span``, ``p_drop_video``).

    Args:
        cfg: the flow config.
        cond: the conditioning of a batch of ``batch`` rows.
        drop: ``drop(cond, kind, rows [B] bool) -> cond`` (the model's null-embedding swap).
        generator: RNG of the masks.
    """
    for kind, p in (("text", cfg.p_drop_text), ("span", cfg.p_drop_span), ("video", cfg.p_drop_video)):
        cond = drop(cond, kind, drop_mask(p, batch, device, generator))
    return cond


def objective(cfg: FlowConfig, x1: torch.Tensor, z_mix: torch.Tensor,
              network: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              to_data: Callable[[torch.Tensor], torch.Tensor] | None = None,
              latent_std: torch.Tensor | None = None, offset: torch.Tensor | float = 0.0,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow-matching training objective: prior, time sampling, interpolation and loss.

    Args:
        cfg: the flow config (prior, time sampler, prediction, data loss).
        x1: data ``[B, T, 2C]`` (target | residual latents).
        z_mix: mixture latents ``[B, T, C]`` (for the prior and mask predictions).
        network: ``network(x_t, t) -> output [B, T, 2C]`` (the conditioned backbone).
        to_data: for ``prediction="mask"``: network output -> data estimate (see :func:`mask_split`).
        latent_std / offset: latent statistics for :func:`data_loss`.
        generator: RNG of the noise and the times.

    Returns:
        ``(loss, t [B], x1_hat)``: ``x1_hat [B, T, 2C]`` is the data estimate of a mask
        prediction (for a loss on the decoded output), None for a velocity prediction.
    """
    x0 = prior_sample(cfg, z_mix, torch.randn(x1.shape, device=x1.device, generator=generator))
    t = sample_timesteps(cfg, x1.shape[0], x1.device, generator)
    pred = network(interpolate(x0, x1, t), t)
    if cfg.prediction == "velocity":
        return flow_loss(pred, velocity_target(x0, x1)), t, None
    # data prediction: the error of the stems themselves (the velocity error weighted by (1 - t)^2)
    x1_hat = to_data(pred)
    return data_loss(cfg.data_loss, x1_hat, x1, z_mix, latent_std, offset), t, x1_hat
